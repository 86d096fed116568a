"""Checks for what subscribers and admins type: address, name, timezone, send time."""

from __future__ import annotations

import re
import zoneinfo
from datetime import time
from functools import lru_cache

from guide.errors import GuideError

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
NAME_MAX = 100


class ValidationError(GuideError, ValueError):
    """A value a person typed is not acceptable; the message says why, in plain words."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def check_email(value: str) -> str:
    """A normalized address (trimmed, lower-case), or ValidationError."""
    address = value.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or len(address) > 254 or len(local) > 64:
        raise ValidationError("email", f"{value!r} is not an email address")
    if not _LOCAL.match(local) or not _DOMAIN.match(domain):
        raise ValidationError("email", f"{value!r} is not an email address")
    return address


def check_name(value: str) -> str:
    """A trimmed first name of at most 100 characters, one line; empty is fine."""
    if _BREAKS.search(value):
        raise ValidationError("name", "must be one line without control characters")
    name = " ".join(value.split())
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"must be at most {NAME_MAX} characters")
    return name


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(value: str) -> str:
    """An IANA timezone name such as Europe/Berlin."""
    name = value.strip()
    if name not in _zones():
        raise ValidationError(
            "timezone", f"{value!r} is not an IANA timezone (for example Europe/Berlin)"
        )
    return name


def check_send_time(value: str) -> str:
    """A local send time as zero-padded HH:MM."""
    match = _TIME.match(value.strip())
    if not match:
        raise ValidationError(
            "send_time", f"{value!r} is not a 24-hour time HH:MM (for example 08:30)"
        )
    return time(int(match.group(1)), int(match.group(2))).strftime("%H:%M")


def check_flag(value: str) -> bool:
    """A yes/no column in a CSV file."""
    text = value.strip().lower()
    if text in ("", "0", "false", "no", "n"):
        return False
    if text in ("1", "true", "yes", "y"):
        return True
    raise ValidationError("discreet", f"{value!r} is not yes/no")
