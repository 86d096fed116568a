"""The admin's session cookie: signed and expiring (itsdangerous), revoked at logout."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from guide.clock import Clock

SESSION_COOKIE = "drg_admin"
_REVOKED_MAX = 10_000  # logouts remembered; more than one admin could ever make


class _ClockedSigner(TimestampSigner):
    """itsdangerous reads the wall clock itself; this one is told the time, so tests move it."""

    now: int = 0

    def get_timestamp(self) -> int:
        return self.now


@dataclass(frozen=True)
class Session:
    """One logged-in admin: who, and the id logout revokes."""

    username: str
    session_id: str


@dataclass
class Sessions:
    """Issues and checks session cookies for one admin login; lives as long as the process.

    The key is derived from the link secret and the password hash, so a new password (after a
    reload) ends every session made with the old one.
    """

    clock: Clock
    _revoked: dict[str, datetime] = field(default_factory=dict)
    _signers: dict[tuple[str, str], _ClockedSigner] = field(default_factory=dict)

    def _signer(self, secret: str, password_hash: str) -> _ClockedSigner:
        signer = self._signers.get((secret, password_hash))
        if signer is None:
            key = hmac.new(
                secret.encode(), b"drg.admin-session\0" + password_hash.encode(), hashlib.sha256
            ).digest()
            signer = _ClockedSigner(key, salt="drg.admin-session", digest_method=hashlib.sha256)
            self._signers = {(secret, password_hash): signer}  # only the current one is kept
        signer.now = int(self.clock().timestamp())
        return signer

    def issue(self, username: str, secret: str, password_hash: str) -> str:
        """A new cookie value for `username`."""
        payload = json.dumps({"u": username, "s": secrets.token_urlsafe(16)})
        return self._signer(secret, password_hash).sign(payload.encode()).decode("ascii")

    def check(
        self, cookie: str, secret: str, password_hash: str, lifetime: timedelta
    ) -> Session | None:
        """The session of a valid, unexpired, not revoked cookie; None otherwise."""
        if not cookie or len(cookie) > 1024:
            return None
        signer = self._signer(secret, password_hash)
        try:
            raw = signer.unsign(cookie, max_age=int(lifetime.total_seconds()))
            data = json.loads(raw)
        except (SignatureExpired, BadSignature, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        username, session_id = data.get("u"), data.get("s")
        if not isinstance(username, str) or not isinstance(session_id, str):
            return None
        if session_id in self._revoked:
            return None
        return Session(username, session_id)

    def revoke(self, session: Session, lifetime: timedelta) -> None:
        """End `session` now: its cookie, even if kept, no longer opens a page."""
        now = self.clock()
        # A revoked id needs remembering only until its cookie would have expired anyway.
        self._revoked = {sid: at for sid, at in self._revoked.items() if at > now}
        if len(self._revoked) >= _REVOKED_MAX:
            self._revoked.pop(next(iter(self._revoked)))
        self._revoked[session.session_id] = now + lifetime
