"""Tests for guide.text, and that every place checking a kind of text agrees with it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from delivery.headers import check_header_text, clean_header_text
from guide.config import load_config
from guide.errors import ConfigError, HeaderInjectionError
from guide.text import (
    LINE_BREAKS,
    ValidationError,
    check_email,
    check_name,
    check_send_time,
    is_email_address,
    is_one_line,
    parse_time_of_day,
    spells_address,
    to_one_line,
    unsafe_characters,
)
from scheduler.schedule import parse_send_time

FAST = settings(max_examples=300, deadline=None, database=None)
# Text a person might type, weighted towards the characters that matter here.
TYPED = st.text(
    st.one_of(
        st.sampled_from([*LINE_BREAKS, "\t", "\x00", "\x1b", "\x7f", "\x9b", " ", "a", "é", "’"]),
        st.characters(),
    ),
    max_size=12,
)


# --- one line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("char", sorted(LINE_BREAKS), ids=repr)
def test_every_line_break_str_splitlines_knows_is_refused(char: str) -> None:
    assert f"a{char}b".splitlines() == ["a", "b"]
    assert not is_one_line(f"a{char}b")
    assert unsafe_characters(f"a{char}b") == {char}


@pytest.mark.parametrize("char", ["\x00", "\t", "\x1b", "\x7f", "\x80", "\x9f"], ids=repr)
def test_control_characters_are_refused(char: str) -> None:
    assert not is_one_line(f"a{char}b")
    assert to_one_line(f"a{char}b") == "a b"


def test_ordinary_text_is_one_line() -> None:
    assert is_one_line("Zoë’s Notes — daily, 08:30 (UTC+1) ✓")
    assert is_one_line("")


def test_multiline_text_keeps_line_feeds_and_tabs_only() -> None:
    assert unsafe_characters("one\n\ttwo\n", multiline=True) == set()
    assert unsafe_characters("one\r\ntwo\x07", multiline=True) == {"\r", "\x07"}
    # Unicode separators are line breaks, not control characters, in a text of several lines.
    assert unsafe_characters("one\u2028two", multiline=True) == set()


@given(TYPED)
@FAST
def test_one_line_means_no_control_character_and_no_separator(text: str) -> None:
    # Unicode's own categories: controls (Cc), line (Zl) and paragraph (Zp) separators.
    expected = not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)
    assert is_one_line(text) is expected
    assert is_one_line(to_one_line(text))
    if expected:
        assert to_one_line(text) == " ".join(text.split())


@given(TYPED)
@settings(max_examples=100, deadline=None, database=None)
def test_headers_names_and_config_agree_on_one_line(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    # Names that could spell an address are refused by check_name alone, on purpose.
    assume(not spells_address(text))
    path = tmp_path_factory.getbasetemp() / "agree.yaml"
    path.write_text(f"sender:\n  name: {quoted(text)}\n", encoding="utf-8")
    verdicts = {
        "guide.text": is_one_line(text),
        "headers": _accepts(lambda: check_header_text(text, "name"), HeaderInjectionError),
        "web and CSV names": _accepts(lambda: check_name(text), ValidationError),
        "config.yaml": _accepts(lambda: load_config(path, env={}), ConfigError),
    }
    assert len(set(verdicts.values())) == 1, verdicts
    assert clean_header_text(text) == to_one_line(text)


def quoted(text: str) -> str:
    """`text` as a YAML double-quoted scalar, every character escaped."""
    return '"' + "".join(f"\\U{ord(ch):08x}" for ch in text) + '"'


def _accepts(call: Callable[[], object], error: type[Exception]) -> bool:
    try:
        call()
    except error:
        return False
    return True


# --- email addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["a@example.org", "first.last+tag@mail.example.co.uk", "o'brien@example.ie", "x@a-b.example"],
)
def test_addresses_accepted(address: str) -> None:
    assert is_email_address(address)
    assert check_email(f"  {address.upper()} ") == address.lower()


@pytest.mark.parametrize(
    "address",
    [
        "",
        "plain",
        "@example.org",
        "a@",
        "a@localhost",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a b@example.org",
        "a@-example.org",
        "a@example.o",
        "a@example.123",
        "a\n@example.org",
        "a@exam\u2028ple.org",
        "a@b@example.org",
        "x" * 65 + "@example.org",
    ],
    ids=repr,
)
def test_addresses_refused(address: str) -> None:
    assert not is_email_address(address)
    with pytest.raises(ValidationError, match="is not an email address"):
        check_email(address)


def test_surrounding_white_space_is_trimmed_not_kept() -> None:
    assert not is_email_address("a@example.org\n")
    assert check_email(" a@example.org\n") == "a@example.org"


def test_a_dotless_domain_only_where_asked_for() -> None:
    assert is_email_address("guide@localhost", dotless_domain=True)
    assert not is_email_address("guide@localhost")
    assert not is_email_address("guide@local..host", dotless_domain=True)


# --- time of day ------------------------------------------------------------------------------


def test_time_of_day_is_the_one_behind_send_times() -> None:
    assert parse_time_of_day("7:05") == parse_send_time("7:05") == time(7, 5)
    assert check_send_time(" 7:05 ") == "07:05"
    for text in ("24:00", "7:5", "07:05 ", "\u0667:05"):
        with pytest.raises(
            ValueError, match=re.escape(f"time must be a 24-hour time HH:MM, got {text!r}")
        ):
            parse_time_of_day(text)
        with pytest.raises(ValueError, match="send time must be a 24-hour time HH:MM"):
            parse_send_time(text)
    with pytest.raises(ValidationError, match="is not a 24-hour time HH:MM"):
        check_send_time("24:00")


def test_config_yaml_one_line_texts_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('footer:\n  emergency: "Call\\x1b[2J now"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"footer\.emergency: must be one line of text"):
        load_config(path, env={})
