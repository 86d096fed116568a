"""The admin password as a salted scrypt hash: made by `admin hash-password`, checked at login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt with N=2**15, r=8, p=1 takes about 32 MB and a tenth of a second: cheap for one login,
# dear for someone guessing from a stolen hash. The parameters travel in the hash, so raising
# them later leaves old hashes valid.
_N, _R, _P = 2**15, 8, 1
_PREFIX = "scrypt"
_MAXMEM = 128 * 1024 * 1024
PASSWORD_MIN = 12  # characters: a passphrase, not a PIN
PASSWORD_MAX = 1024  # longer is a paste gone wrong


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)


def password_problem(password: str) -> str | None:
    """Why `password` cannot be an admin password (None when it can)."""
    if len(password) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"must be at most {PASSWORD_MAX} characters"
    if password != password.strip() or any(ord(c) < 32 for c in password):
        return "must not start or end with a space, nor hold control characters"
    return None


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` for `password`, with a fresh random salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    derived = _derive(password, salt, _N, _R, _P)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(derived)}"


def _parts(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    fields = stored.strip().split("$")
    if len(fields) != 6 or fields[0] != _PREFIX:
        return None
    try:
        n, r, p = int(fields[1]), int(fields[2]), int(fields[3])
        salt, derived = _unb64(fields[4]), _unb64(fields[5])
    except ValueError:
        return None
    # Bounds keep a hand-edited hash from asking for gigabytes, or from being trivial.
    if not (2**14 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    if len(salt) < 16 or len(derived) != 64 or 128 * n * r > _MAXMEM:
        return None
    return n, r, p, salt, derived


def hash_problem(stored: str) -> str | None:
    """Why `stored` is not a hash `admin hash-password` makes (None when it is)."""
    if _parts(stored) is None:
        return (
            "is not an admin password hash (scrypt$N$r$p$salt$hash): "
            "make one with `python run.py admin hash-password`"
        )
    return None


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the hash `stored` (False for a malformed hash)."""
    parts = _parts(stored)
    if parts is None or len(password) > PASSWORD_MAX:
        return False
    n, r, p, salt, derived = parts
    return hmac.compare_digest(_derive(password, salt, n, r, p), derived)
