"""The one check for each kind of text people type: one line, email address, time of day."""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import time
from functools import lru_cache

from guide.errors import GuideError

# Every character str.splitlines() breaks at; Unicode and some mail parsers treat them as line
# ends, so any of them inside a header value could start a header of its own.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# One line: no control character at all (C0, DEL, C1 — that covers every break above but the
# two Unicode separators), nor those separators.
_NOT_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Text of several lines (a lesson body): line feeds and tabs are its own, other controls are not.
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ONE_LINE = "must be one line without control characters"

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(\.{_ATOM})*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")
_TOP_LEVEL = re.compile(r"[A-Za-z]{2,63}")

# [0-9], not \d: \d would also accept non-ASCII digits such as "٠٩:٠٥".
_TIME_OF_DAY = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
NAME_MAX = 100
NOT_AN_ADDRESS = "must not contain @, < or > or =? (it must not look like an email address)"


class ValidationError(GuideError, ValueError):
    """A value a person typed is not acceptable; the message says why, in plain words."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def unsafe_characters(text: str, *, multiline: bool = False) -> set[str]:
    """The control characters and line breaks in `text` (line feed and tab allowed if multiline)."""
    return set((_NOT_IN_TEXT if multiline else _NOT_IN_A_LINE).findall(text))


def is_one_line(text: str) -> bool:
    """Whether `text` is one line without control characters, safe for a header."""
    return _NOT_IN_A_LINE.search(text) is None


def to_one_line(text: str) -> str:
    """`text` with every line break and control character made a space, white space folded."""
    return " ".join(_NOT_IN_A_LINE.sub(" ", text).split())


def spells_address(text: str) -> bool:
    """Whether a display name could show as another email address in a mail reader.

    That is: it holds @, < or > (or a look-alike that NFKC folds to one, such as the fullwidth
    ＠), or =?, which readers decode as an RFC 2047 encoded word even inside quotes, so that
    =?utf-8?q?evil=40attacker.example?= shows as evil@attacker.example.
    """
    folded = unicodedata.normalize("NFKC", text)
    return "=?" in folded or any(mark in folded for mark in "@<>")


def is_email_address(address: str, *, dotless_domain: bool = False) -> bool:
    """Whether `address` is local@domain; `dotless_domain` also allows a host such as localhost."""
    local, at, domain = address.rpartition("@")
    if not at or not local or len(address) > 254 or len(local) > 64:
        return False
    if not _LOCAL_PART.fullmatch(local) or not _HOST.fullmatch(domain):
        return False
    # Subscribers need a domain mail can reach; an operator's own sender may be on a local host.
    labels = domain.split(".")
    return dotless_domain or (len(labels) > 1 and bool(_TOP_LEVEL.fullmatch(labels[-1])))


def parse_time_of_day(text: str, what: str = "time") -> time:
    """'HH:MM' (24-hour, zero-padded hour optional) as a time, else ValueError naming `what`."""
    match = _TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise ValueError(f"{what} must be a 24-hour time HH:MM, got {text!r}")
    return time(int(match[1]), int(match[2]))


def check_email(value: str) -> str:
    """A normalized address (trimmed, lower-case), or ValidationError."""
    address = value.strip().lower()
    if not is_email_address(address):
        raise ValidationError("email", f"{value!r} is not an email address")
    return address


def check_name(value: str) -> str:
    """A trimmed first name of at most 100 characters, one line; empty is fine."""
    if not is_one_line(value):
        raise ValidationError("name", ONE_LINE)
    name = " ".join(value.split())
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"must be at most {NAME_MAX} characters")
    if spells_address(name):
        raise ValidationError("name", NOT_AN_ADDRESS)
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
    try:
        return parse_time_of_day(value.strip()).strftime("%H:%M")
    except ValueError as err:
        raise ValidationError(
            "send_time", f"{value!r} is not a 24-hour time HH:MM (for example 08:30)"
        ) from err


def check_flag(value: str) -> bool:
    """A yes/no column in a CSV file."""
    text = value.strip().lower()
    if text in ("", "0", "false", "no", "n"):
        return False
    if text in ("1", "true", "yes", "y"):
        return True
    raise ValidationError("discreet", f"{value!r} is not yes/no")
