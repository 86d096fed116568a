"""Signed, purpose-bound tokens for every link in an email or page (itsdangerous HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from guide.config import Config

# One salt per purpose, so a token made for one link can never be replayed on another.
PURPOSES = ("unsubscribe", "manage", "confirm", "lesson", "export", "erase")


class TokenError(Exception):
    """A token is tampered with, made for another purpose, or expired."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired
        super().__init__("link expired" if expired else "invalid link")


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks the signed URLs in emails and pages."""

    secret: str
    public_url: str
    lifetime: timedelta

    def _signer(
        self, purpose: str, now: datetime
    ) -> tuple[URLSafeTimedSerializer, TimestampSigner]:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        serializer = URLSafeTimedSerializer(self.secret, salt=f"drg.{purpose}")
        signer = serializer.make_signer(serializer.salt)
        assert isinstance(signer, TimestampSigner)
        # itsdangerous reads the wall clock itself; give it ours so tests can move time.
        signer.get_timestamp = lambda: int(now.timestamp())  # type: ignore[method-assign]
        return serializer, signer

    def token(self, purpose: str, payload: Any, now: datetime) -> str:
        """A signed token for `payload`, timestamped `now` (expiry is checked on use)."""
        serializer, signer = self._signer(purpose, now)
        return signer.sign(serializer.dump_payload(payload)).decode("ascii")

    def load(self, purpose: str, token: str, now: datetime, *, expires: bool = True) -> Any:
        """The payload of a valid token; TokenError otherwise."""
        serializer, signer = self._signer(purpose, now)
        max_age = int(self.lifetime.total_seconds()) if expires else None
        try:
            raw = signer.unsign(token, max_age=max_age)
        except SignatureExpired as err:
            raise TokenError(expired=True) from err
        except BadSignature as err:
            raise TokenError(expired=False) from err
        return serializer.load_payload(raw)

    def url(self, path: str, purpose: str, payload: Any, now: datetime) -> str:
        """The public URL `{public_url}/{path}/{token}`."""
        return f"{self.public_url}/{path}/{self.token(purpose, payload, now)}"

    def message_id(self, domain: str, *parts: object) -> str:
        """A stable Message-ID for `parts` that reveals nothing about them."""
        digest = hmac.new(self.secret.encode(), ":".join(map(str, parts)).encode(), hashlib.sha256)
        return f"<{digest.hexdigest()[:32]}@{domain}>"


def link_secret(config: Config) -> str:
    """The configured link secret, or one generated once into the state directory (0600)."""
    if config.link_secret:
        return config.link_secret
    path: Path = config.state_dir / "link-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not end up with different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def make_signer(config: Config) -> LinkSigner:
    """The LinkSigner for this deployment."""
    return LinkSigner(link_secret(config), config.web.public_url, config.link_lifetime)
