"""Signed, purpose-bound tokens for every link in an email or page (itsdangerous HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes

from guide.config import Config
from guide.errors import ConfigError, TokenError
from guide.keys import link_key_problem, new_link_key
from guide.private import private_folder, read_secret

# One salt per purpose, so a token made for one link can never be replayed on another.
PURPOSES = ("unsubscribe", "manage", "confirm", "lesson", "export", "erase")
# One encoder for every token: json.dumps() with options builds a new one per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
# Refs kept per signer: far more than any library's lesson ids, a bound if edits churn them.
_LESSON_REFS_MAX = 4096


class _ClockedSigner(TimestampSigner):
    """itsdangerous reads the wall clock itself; this one is told the time, so tests can move it.

    It also keeps the keyed HMAC it signs with: itsdangerous derives the key and keys a new
    HMAC for every signature, and every email carries three links.
    """

    now: int = 0
    _keyed: hmac.HMAC | None = None

    def get_timestamp(self) -> int:
        return self.now

    def get_signature(self, value: str | bytes) -> bytes:
        if self._keyed is None:
            self._keyed = hmac.new(self.derive_key(), digestmod=self.digest_method)
        mac = self._keyed.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks the signed URLs in emails and pages."""

    secret: str
    public_url: str
    lifetime: timedelta
    _signers: dict[str, _ClockedSigner] = field(default_factory=dict, compare=False, repr=False)
    _lesson_refs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def _signer(self, purpose: str, now: datetime) -> _ClockedSigner:
        signer = self._signers.get(purpose)
        if signer is None:
            if purpose not in PURPOSES:
                raise ValueError(f"unknown token purpose {purpose!r}")
            # Built once per purpose: every email carries three links, so this is hot.
            signer = _ClockedSigner(
                self.secret, salt=f"drg.{purpose}", digest_method=hashlib.sha256
            )
            self._signers[purpose] = signer
        signer.now = int(now.timestamp())
        return signer

    def token(self, purpose: str, payload: Any, now: datetime) -> str:
        """A signed token for `payload` (JSON), timestamped `now`; expiry is checked on use."""
        # Plain base64 JSON, not URLSafeSerializer's: its zlib attempt costs more than it saves
        # on payloads this small.
        data = base64_encode(_COMPACT_JSON.encode(payload).encode("utf-8"))
        return self._signer(purpose, now).sign(data).decode("ascii")

    def load(
        self,
        purpose: str,
        token: str,
        now: datetime,
        *,
        expires: bool = True,
        lifetime: timedelta | None = None,
    ) -> Any:
        """The payload of a valid token; TokenError otherwise (`lifetime` overrides the default)."""
        signer = self._signer(purpose, now)
        max_age = int((lifetime or self.lifetime).total_seconds()) if expires else None
        try:
            raw = signer.unsign(token, max_age=max_age)
            return json.loads(base64_decode(raw))
        except SignatureExpired as err:
            raise TokenError(expired=True) from err
        except (BadSignature, ValueError) as err:
            raise TokenError(expired=False) from err

    def url(self, path: str, purpose: str, payload: Any, now: datetime) -> str:
        """The public URL `{public_url}/{path}/{token}`."""
        return f"{self.public_url}/{path}/{self.token(purpose, payload, now)}"

    def lesson_ref(self, lesson_id: str) -> str:
        """An opaque stand-in for `lesson_id` in a read-online link: keyed, so it names nothing.

        A token's payload is only base64, readable in the URL bar and in browser history; a
        lesson id such as "smear-campaigns" there would say what the emails are about.
        """
        ref = self._lesson_refs.get(lesson_id)
        if ref is None:
            # Lesson ids are few, so each is keyed once; every lesson email carries one.
            if len(self._lesson_refs) >= _LESSON_REFS_MAX:
                self._lesson_refs.clear()
            mac = self._lesson_ref_key.copy()
            mac.update(lesson_id.encode("utf-8"))
            # 72 bits: a collision within one sequence's few dozen lessons is out of reach.
            ref = base64_encode(mac.digest()[:9]).decode("ascii")
            self._lesson_refs[lesson_id] = ref
        return ref

    def find_lesson(self, ref: str, lesson_ids: Iterable[str]) -> str | None:
        """The one of `lesson_ids` whose lesson_ref() is `ref`, or None."""
        # Called once per page view, over one sequence's lessons, each ref already cached.
        return next((id_ for id_ in lesson_ids if self.lesson_ref(id_) == ref), None)

    @cached_property
    def _lesson_ref_key(self) -> hmac.HMAC:
        # A key of its own, derived from the secret: a ref is never a Message-ID's digest.
        key = hmac.new(self.secret.encode(), b"drg.lesson-ref", hashlib.sha256).digest()
        return hmac.new(key, digestmod=hashlib.sha256)

    def message_id(self, domain: str, *parts: object) -> str:
        """A stable Message-ID for `parts` that reveals nothing about them."""
        digest = self._message_ids.copy()
        digest.update(":".join(map(str, parts)).encode())
        return f"<{digest.hexdigest()[:32]}@{domain}>"

    @cached_property
    def _message_ids(self) -> hmac.HMAC:
        return hmac.new(self.secret.encode(), digestmod=hashlib.sha256)


def link_secret(config: Config) -> str:
    """The configured link secret, or one generated once into the state directory (0600)."""
    if config.link_secret:
        return config.link_secret
    path: Path = config.state_dir / "link-secret"
    private_folder(config.state_dir, "state_dir")
    if not path.exists():
        # O_EXCL: two processes starting at once must not end up with different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(new_link_key() + "\n")
    value = read_secret(path, "state_dir")
    problem = link_key_problem(value)
    if problem:
        # Someone wrote this file by hand: say so rather than sign links anyone could forge.
        raise ConfigError(
            "state_dir",
            f"{path}: {problem}; or delete the file to have one generated "
            "(links already sent stop working)",
        )
    return value


def make_signer(config: Config) -> LinkSigner:
    """The LinkSigner for this deployment."""
    return LinkSigner(link_secret(config), config.web.public_url, config.link_lifetime)
