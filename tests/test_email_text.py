"""The words and shape of every email: line lengths, the closing email, titles, Outlook."""

from __future__ import annotations

import html
import re
import textwrap

import pytest

from tests.messages import KINDS, Built, every_message, urls

# RFC 5322's recommended line length; plain-text readers show longer lines wrapped anyhow.
LINE_MAX = 78
_TAG = re.compile(r"<[^>]+>")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[Built]:
    return every_message(tmp_path_factory.mktemp("mail"))


def visible(page: str) -> str:
    """The text an HTML part shows, whitespace collapsed."""
    body = page.split("<body", 1)[1]
    body = re.sub(r"<div style=\"display:none.*?</div>", " ", body, flags=re.S)  # preheader
    return " ".join(html.unescape(_TAG.sub(" ", body)).split())


def long_lines(text: str) -> list[str]:
    """Lines over LINE_MAX once their URLs are left out (a URL cannot be wrapped)."""
    found = []
    for line in text.splitlines():
        rest = line
        for url in urls(line):
            rest = rest.replace(url, "")
        if len(rest.rstrip()) > LINE_MAX:
            found.append(line)
    return found


def test_every_kind_and_mode_is_built(built: list[Built]) -> None:
    kinds = {(b.kind, b.discreet) for b in built}
    assert {(kind, mode) for kind in KINDS for mode in (False, True)} - kinds == {
        ("confirm", False)  # the confirmation is always discreet
    }
    assert len({b.sequence.id for b in built}) >= 2


def test_no_text_line_is_over_78_characters_except_urls(built: list[Built]) -> None:
    problems = [f"{b.label}: {line!r}" for b in built for line in long_lines(b.text)]
    assert not problems, "\n".join(problems)


def test_the_length_check_can_fail() -> None:
    sentence = "Thank you for giving yourself these 30 days. " * 3
    assert long_lines(sentence) == [sentence]
    assert not long_lines("Stop receiving these emails: https://x.example/" + "a" * 120)


def test_the_closing_html_says_what_its_text_says(built: list[Built]) -> None:
    for closing in (b for b in built if b.kind == "closing"):
        text = " ".join(closing.text.split("\n-- \n")[0].split())
        shown = visible(closing.html)
        for sentence in re.split(r"(?<=[.!?])\s+", text.split(",", 1)[1].strip()):
            # The HTML shows the first one as a heading, without its full stop.
            assert sentence.rstrip(".") in shown, f"{closing.label}: the HTML lacks {sentence!r}"


def test_the_closing_email_offers_no_pause(built: list[Built]) -> None:
    for closing in (b for b in built if b.kind == "closing"):
        for part in (closing.text, closing.html):
            assert "Pause" not in part and "/manage/" not in part, closing.label
            assert "/unsubscribe/" in part, f"{closing.label}: the stop link is missing"
    lesson = next(b for b in built if b.kind == "lesson")
    assert "/manage/" in lesson.text  # lessons keep theirs


def test_every_html_title_is_the_neutral_site_name(built: list[Built]) -> None:
    names = set()
    for message in built:
        [title] = re.findall(r"<title>(.*?)</title>", message.html, flags=re.S)
        names.add(title)
        lesson = message.lesson
        if lesson is not None:
            assert lesson.title not in title and lesson.subject not in title, message.label
    assert names == {"Daily Notes"}  # sender.discreet_name's default


def test_outlook_gets_a_fixed_width_ghost_table(built: list[Built]) -> None:
    for message in built:
        page = message.html
        opening = page.index('<!--[if mso]><table role="presentation" width="600"')
        column = page.index("max-width:600px")
        closing = page.index("<!--[if mso]></td></tr></table><![endif]-->")
        assert opening < column < closing, message.label
        assert page.count("<!--[if mso]>") == 2, message.label


def test_discreet_text_opens_with_neutral_lines(built: list[Built]) -> None:
    for message in (b for b in built if b.discreet and b.kind in ("lesson", "send-test")):
        lesson = message.lesson
        assert lesson is not None
        text = message.text
        day = f"Day {message.sequence.day_of(lesson.id)} of {len(message.sequence)}."
        assert day in text[:120], message.label
        title_at = text.index("\n" + textwrap.wrap(lesson.title, 72)[0] + "\n")
        assert title_at > 300, f"{message.label}: the title starts at {title_at}"
        if lesson.content_note:
            assert text.index("Content note:") > title_at, message.label


def test_normal_text_starts_with_the_day_phase_and_title(built: list[Built]) -> None:
    for message in (b for b in built if not b.discreet and b.kind == "lesson"):
        lesson = message.lesson
        assert lesson is not None
        day = message.sequence.day_of(lesson.id)
        phase = message.sequence.phase_title(lesson.phase)
        lines = message.text.splitlines()
        assert lines[2] == f"Day {day} of {len(message.sequence)} · {phase}", message.label
        assert lines[4] == textwrap.wrap(lesson.title, 72)[0], message.label
