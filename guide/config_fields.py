"""The kinds of value config.yaml holds, and the error message each one derives from its type."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

import annotated_types
from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from guide.text import is_email_address, is_one_line, spells_address

T = TypeVar("T")
_DNS_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*")
# The limits on what an operator writes (README "Limits"): generous for real use, small enough
# that no header, page or log line can be blown up by a paste gone wrong.
NAME_LIMIT = 100  # a From display name, as a subscriber's name (guide.text.NAME_MAX)
SUBJECT_LIMIT = 200  # a subject line
SENTENCE_LIMIT = 500  # footer lines
RESOURCE_LIMIT = 200  # a help line's label and contact (footer.countries)
URL_LIMIT = 2000  # URLs (browsers and mail clients cope with far longer, people do not)
HOST_LIMIT = 253  # a DNS name (RFC 1035)
TEXT_LIMIT = 256  # user names, listen addresses, sequence ids
PATH_LIMIT = 4096  # PATH_MAX on Linux
UNKNOWN_KEY = "unknown key (misspelt? see the comments in config.yaml)"


@dataclass(frozen=True)
class Unit:
    """What a number counts, for its message: Unit("seconds") gives 'must be seconds from …'."""

    name: str


@dataclass(frozen=True)
class ZeroMeans:
    """What 0 stands for, for the message: ZeroMeans("no limit") gives 'from 0 (no limit) to …'."""

    meaning: str


@dataclass(frozen=True)
class Kind:
    """What a text is, for its message: Kind("a host name") gives 'must be a host name'."""

    text: str


@dataclass(frozen=True)
class NotInFile:
    """Marks an attribute config.yaml does not set under its own name."""


@dataclass(frozen=True)
class FromKey(NotInFile):
    """The attribute comes from another key of its section, e.g. lessons_dir from lessons.dir."""

    key: str
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class FromSecret(NotInFile):
    """The attribute is a secret: $DRG_<NAME>, the file at `file_key`, or a systemd credential.

    `check` says what is wrong with a value found (None when it is fine); its message is shown
    with where the value came from.
    """

    name: str
    file_key: str
    check: Callable[[str], str | None] | None = None


def _resolve_path(value: Any, info: ValidationInfo) -> Any:
    # While config.yaml is read, relative paths (defaults too) mean relative to its folder;
    # Python callers get their paths as they are.
    if isinstance(value, str) and len(value) > PATH_LIMIT:
        raise PydanticCustomError("string_too_long", "too long", {"max_length": PATH_LIMIT})
    base = info.context.get("base") if isinstance(info.context, dict) else None
    if isinstance(base, Path) and isinstance(value, str | Path):
        return base / Path(value).expanduser()
    return value


def _one_line(value: str) -> str:
    if not is_one_line(value):
        raise ValueError("not one line")
    return value


def _display_name(value: str) -> str:
    # The From display name: one that could spell an address would let a reader see mail from
    # someone else (the rule subscriber names follow, guide.text.spells_address).
    if not is_one_line(value) or spells_address(value):
        raise ValueError("not a display name")
    return value


def _host_name(value: str) -> str:
    # Host names go into EHLO and connect calls: a line break would end the command early.
    if not is_one_line(value) or " " in value:
        raise ValueError("not a host name")
    return value


def _dns_name(value: str) -> str:
    # DKIM's d= and s= tags and the DNS name a verifier looks up; empty means not configured.
    if value and not _DNS_NAME.fullmatch(value):
        raise ValueError("not a DNS name")
    return value


def _email_or_empty(value: str) -> str:
    # The operator's own addresses may be on a local host (the default is guide@localhost).
    if value and not is_email_address(value, dotless_domain=True):
        raise ValueError("not an email address")
    return value


def _http_url(value: str) -> str:
    # urlsplit quietly drops tabs and line breaks, so check for them before it does.
    if not is_one_line(value) or " " in value:
        raise ValueError("white space or a control character in a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


Boolean = Annotated[bool, Strict()]
Integer = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
FolderPath = Annotated[Path, Strict(), BeforeValidator(_resolve_path), Kind("a folder path")]
# A default folder is relative to config.yaml's folder too.
Folder = Annotated[FolderPath, Field(validate_default=True)]
FileName = Annotated[
    str, Strict(), AfterValidator(_one_line), Field(max_length=PATH_LIMIT), Kind("a file path")
]
HostName = Annotated[
    str, Strict(), AfterValidator(_host_name), Field(max_length=HOST_LIMIT), Kind("a host name")
]
DNSName = Annotated[
    str, Strict(), AfterValidator(_dns_name), Field(max_length=HOST_LIMIT), Kind("a DNS name")
]
OneLine = Annotated[str, Strict(), AfterValidator(_one_line), Kind("one line of text")]
Word = Annotated[OneLine, Field(max_length=TEXT_LIMIT)]
Name = Annotated[
    str,
    Strict(),
    AfterValidator(_display_name),
    Field(max_length=NAME_LIMIT),
    Kind("one line of text without @, <, > or =? (a display name)"),
]
Subject = Annotated[OneLine, Field(max_length=SUBJECT_LIMIT)]
Sentence = Annotated[OneLine, Field(max_length=SENTENCE_LIMIT)]
RequiredLine = Annotated[OneLine, Field(min_length=1, max_length=RESOURCE_LIMIT)]
EmailOrEmpty = Annotated[str, Strict(), AfterValidator(_email_or_empty), Kind("an email address")]
Email = Annotated[EmailOrEmpty, Field(min_length=1)]
HttpURL = Annotated[
    str, Strict(), AfterValidator(_http_url), Field(max_length=URL_LIMIT), Kind("an http(s) URL")
]


def plain(info: FieldInfo) -> FieldInfo:
    """`info` with an optional (`X | None`) annotation unwrapped to X's own type and metadata."""
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not NoneType]
        if len(inner) == 1:
            return FieldInfo.from_annotation(inner[0])
    return info


def expected(info: FieldInfo) -> str:
    """What a value of this field must be, e.g. 'must be seconds from 1 to 600'."""
    info = plain(info)
    kind = _last(info, Kind)
    if kind is not None:
        return f"must be {kind.text}"
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return f"must be one of {', '.join(str(choice) for choice in get_args(annotation))}"
    if annotation is bool:
        return "must be true or false"
    if annotation in (int, float):
        return _number_message(info, integer=annotation is int)
    return "has the wrong type"


def _number_message(info: FieldInfo, *, integer: bool) -> str:
    unit = _last(info, Unit)
    zero = _last(info, ZeroMeans)
    low = _last(info, annotated_types.Ge)
    high = _last(info, annotated_types.Le)
    noun = unit.name if unit else "an integer" if integer else "a number"
    if low is None or high is None:
        return f"must be {noun}"
    meaning = f" ({zero.meaning})" if zero and low.ge == 0 else ""
    return f"must be {noun} from {_number(low.ge)}{meaning} to {_number(high.le)}"


def _number(value: Any) -> str:
    # 100000, not 1e+05; 0.01 as written.
    return str(int(value)) if float(value).is_integer() else str(value)


def _last(info: FieldInfo, kind: type[T]) -> T | None:
    # The outermost annotation wins: Annotated[HttpURL, Kind("…with no query")] says more.
    return next((item for item in reversed(info.metadata) if isinstance(item, kind)), None)


def marker(info: FieldInfo) -> NotInFile | None:
    """The NotInFile marker of a field, if config.yaml does not set it under its own name."""
    return _last(info, NotInFile)
