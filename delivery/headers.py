"""Header values that are safe to put on the wire: no injected lines, RFC 2047 where needed."""

from __future__ import annotations

from email.header import Header
from email.utils import formataddr

from guide.errors import HeaderInjectionError
from guide.text import ONE_LINE, is_one_line, spells_address, to_one_line

# Longer or non-ASCII display names become encoded words; formataddr would make one word of any
# length, and an unbreakable word can push a header line past RFC 5322's 998 octets.
_PLAIN_NAME_MAX = 64


def check_header_text(value: str, what: str) -> str:
    """Return `value` unchanged, or raise HeaderInjectionError if it holds a line break."""
    if not is_one_line(value):
        raise HeaderInjectionError(f"{what} {ONE_LINE}")
    return value


def clean_header_text(value: str) -> str:
    """Remove line breaks and control characters (defence in depth at send time)."""
    return to_one_line(value)


def encode_text(name: str, value: str) -> bytes:
    """`Name: value` folded to 78 columns, with RFC 2047 encoded words for non-ASCII."""
    value = check_header_text(value, name)
    if value.isascii() and len(name) + len(value) + 2 <= 78:
        return f"{name}: {value}".encode("ascii")
    encoded = Header(value, "utf-8" if not value.isascii() else "us-ascii", header_name=name)
    return f"{name}: {encoded.encode(linesep=chr(13) + chr(10))}".encode("ascii")


def encode_address(display_name: str, address: str) -> str:
    """An address header value; the display name is cleaned and encoded, never trusted."""
    check_header_text(address, "address")
    if not address.isascii():
        raise HeaderInjectionError("address must be ASCII (IDN domains in punycode)")
    name = clean_header_text(display_name)
    # A phrase that could spell an address (evil@attacker.example, or an encoded word that
    # decodes to one) is dropped: readers show the phrase, and it would name someone else.
    # Input is refused such names (guide.text.check_name); this covers rows stored before.
    if not name or spells_address(name):
        return address
    if name.isascii() and len(name) <= _PLAIN_NAME_MAX:
        return formataddr((name, address))
    # Header splits the name into encoded words of at most 75 characters, space-separated, so
    # encode_text can fold between them.
    return f"{Header(name, 'utf-8').encode(linesep='')} <{address}>"
