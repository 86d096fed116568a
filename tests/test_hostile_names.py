"""Display names can never spell another address: refused as input, dropped from headers."""

from __future__ import annotations

import unicodedata
from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.headers import encode_address, encode_text
from guide.text import NOT_AN_ADDRESS, ValidationError, check_name, spells_address

READER = "reader@example.org"
SPELLING = [
    "=?utf-8?q?evil=40attacker.example?=",
    "=?utf-8?b?ZXZpbEBhdHRhY2tlci5leGFtcGxl?=",
    '"=?utf-8?q?evil=40attacker.example?="',
    "evil@attacker.example",
    "evil\uff20attacker.example",  # FULLWIDTH COMMERCIAL AT
    "evil\ufe6battacker.example",  # SMALL COMMERCIAL AT
    "Sam <sam@attacker.example>",
    "Sam \uff1csam\uff1e",  # fullwidth angle brackets
    "a>b",
    "\uff1d?utf-8?q?x?=",  # FULLWIDTH EQUALS SIGN then ?
]


def to_header(name: str) -> tuple[str, list[str]]:
    """The To header built for `name`, as a mail reader parses it: display name, addresses."""
    raw = encode_text("To", encode_address(name, READER)) + b"\r\n\r\n"
    message = BytesParser(policy=policy.default).parsebytes(raw)
    addresses = message["To"].addresses
    return " ".join(a.display_name for a in addresses), [a.addr_spec for a in addresses]


@pytest.mark.parametrize("name", SPELLING)
def test_a_name_that_spells_an_address_is_refused_as_input(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_name(name)
    assert (refused.value.field, refused.value.message) == ("name", NOT_AN_ADDRESS)


@pytest.mark.parametrize("name", SPELLING)
def test_a_stored_name_that_spells_an_address_is_left_out_of_the_header(name: str) -> None:
    # Rows stored before the input rule, and names from anywhere else, meet this at send time.
    assert to_header(name) == ("", [READER])


@pytest.mark.parametrize("name", ["Zoë Ångström", "Sam O'Neil", "Ann-Marie (she/her)", "李小龙"])
def test_ordinary_names_are_kept(name: str) -> None:
    assert check_name(name) == name
    assert to_header(name) == (name, [READER])


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None, database=None)
def test_no_name_shows_as_an_address_in_the_to_header(name: str) -> None:
    shown, addresses = to_header(name)
    assert addresses == [READER]
    folded = unicodedata.normalize("NFKC", shown)
    assert "@" not in folded and "<" not in folded and ">" not in folded, shown
    assert not spells_address(shown)
