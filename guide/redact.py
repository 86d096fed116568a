"""The one redaction helper: URLs and DSNs shown anywhere (output, logs, /healthz) lose secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable

HIDDEN = "***"
# scheme://user:password@host — the password runs to the last @ before the first /, so one
# holding ':' or '@' unencoded (as people do type them) is hidden whole, while an @ in a path
# or query (http://host:8080/x?to=a@b) is not mistaken for one.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^\s/]*)@")
# libpq keyword DSNs and query strings: password=…, passwd=…, pwd=…
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>'[^']*'|\"[^\"]*\"|[^\s&;,]+)",
    re.IGNORECASE,
)
# Shorter values also occur in ordinary words; replacing them would garble text, not hide much.
MIN_SECRET_LENGTH = 4


def redact(text: str, secrets: Iterable[str | bytes] = ()) -> str:
    """`text` with URL and DSN passwords, and every value in `secrets`, replaced by ***.

    postgresql+asyncpg://guide:secret@db/guide becomes postgresql+asyncpg://guide:***@db/guide.
    """
    text = _URL_PASSWORD.sub(_hide, text)
    text = _KEYWORD_PASSWORD.sub(_hide, text)
    for secret in _values(secrets):
        text = text.replace(secret, HIDDEN)
    return text


def _hide(match: re.Match[str]) -> str:
    tail = "@" if match.group(0).endswith("@") else ""
    return f"{match.group('head')}{HIDDEN}{tail}"


def _values(secrets: Iterable[str | bytes]) -> list[str]:
    """The secrets worth looking for, longest first (so a prefix never leaves a tail behind)."""
    found: set[str] = set()
    for secret in secrets:
        text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
        for part in (text, *text.strip().splitlines()):
            # A PEM key is matched line by line too: a log line can hold any one of them.
            part = part.strip()
            if len(part) >= MIN_SECRET_LENGTH and not part.startswith("-----"):
                found.add(part)
    return sorted(found, key=len, reverse=True)
