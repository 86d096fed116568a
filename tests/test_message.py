"""Tests for delivery.message and delivery.headers (assembled bytes) and guide.tokens."""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import html
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.headers import (
    check_header_text,
    clean_header_text,
    encode_address,
    encode_text,
)
from delivery.message import MessageFactory, Personal, PreparedMessage, Recipient
from guide.config import Config, SenderConfig
from guide.errors import HeaderInjectionError, TokenError
from guide.lessons import Lesson, Sequence, load_library
from guide.tokens import LinkSigner
from tests.harness import LINK_SECRET, OTHER_LINK_SECRET

REPO = Path(__file__).resolve().parent.parent
WHEN = datetime(2025, 3, 4, 7, 30, tzinfo=UTC)
READER = "reader@example.org"
BREAKS = ["\r\n", "\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
# Words a suspicious reader of the inbox must not see in a discreet message's headers.
REVEALING = ("abuse", "narcissis", "recovery", "no contact", "guide")


@pytest.fixture(scope="module")
def config() -> Config:
    """A deployment with a neutral sender address and a mailto unsubscribe."""
    return Config(
        sender=SenderConfig(
            address="notes@example.org",
            name="Daily Recovery Guide",
            discreet_name="Daily Notes",
            discreet_subject="Your note for today",
        ),
        unsubscribe_mailto="leave@example.org",
    )


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    """The shipped 30-day sequence."""
    return load_library(REPO / "lessons")["no-contact"]


@pytest.fixture(scope="module")
def factory(config: Config) -> MessageFactory:
    """A message factory using the shipped templates."""
    return MessageFactory(config, REPO / "templates")


@pytest.fixture(scope="module")
def signer() -> LinkSigner:
    """A link signer for a test site."""
    return LinkSigner(LINK_SECRET, "https://notes.example.org", timedelta(days=30))


@pytest.fixture(scope="module")
def day3(factory: MessageFactory, sequence: Sequence) -> PreparedMessage:
    """Day 3, prepared once."""
    return factory.prepare_lesson(sequence, sequence.lesson_on_day(3))


def personal_for(
    signer: LinkSigner, subscriber: str, lesson_id: str = "the-month-ahead"
) -> Personal:
    """The personal parts for one subscriber, with real signed links."""
    return Personal(
        message_id=signer.message_id("example.org", subscriber, lesson_id),
        unsubscribe_url=signer.url("unsubscribe", "unsubscribe", subscriber, WHEN),
        manage_url=signer.url("manage", "manage", subscriber, WHEN),
        online_url=signer.url("lesson", "lesson", [subscriber, lesson_id], WHEN),
    )


def parse(data: bytes) -> EmailMessage:
    """Parse message bytes with the modern policy."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    """The decoded text/plain and text/html parts, in that order."""
    found = list(message.iter_parts())
    assert [p.get_content_type() for p in found] == ["text/plain", "text/html"]
    text, page = found
    assert isinstance(text, EmailMessage) and isinstance(page, EmailMessage)
    # The decoded payload keeps the wire's CRLF line endings.
    return (
        text.get_content().replace("\r\n", "\n"),
        page.get_content().replace("\r\n", "\n"),
    )


def words(text: str) -> str:
    """Whitespace collapsed, so wrapped lines compare equal to one-line config text."""
    return " ".join(text.split())


def assert_wire_format(data: bytes) -> None:
    """7-bit, CRLF line endings only, no line over 998 octets."""
    assert data.isascii()
    without_crlf = data.replace(b"\r\n", b"")
    assert b"\r" not in without_crlf and b"\n" not in without_crlf
    assert data.endswith(b"\r\n")
    longest = max(len(line) for line in data.split(b"\r\n"))
    assert longest <= 998


def build(
    factory: MessageFactory,
    prepared: PreparedMessage,
    signer: LinkSigner,
    *,
    name: str = "Sam",
    email_address: str = READER,
    discreet: bool = False,
) -> bytes:
    """One message for one recipient."""
    recipient = Recipient(email_address, name, discreet)
    return factory.build(prepared, recipient, personal_for(signer, email_address), WHEN)


# --- structure and headers ---------------------------------------------------------------------


def test_message_has_every_header_and_both_parts(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, config: Config
) -> None:
    data = build(factory, day3, signer)
    message = parse(data)
    assert message.defects == []
    personal = personal_for(signer, READER)
    assert message["Message-ID"] == personal.message_id
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", personal.message_id)
    assert message["Date"].datetime == WHEN
    assert message["From"].addresses[0].display_name == config.sender.name
    assert message["From"].addresses[0].addr_spec == "notes@example.org"
    assert message["To"].addresses[0].display_name == "Sam"
    assert message["To"].addresses[0].addr_spec == READER
    assert message["List-Id"] == "Thirty Days of No Contact <no-contact.example.org>"
    assert message["List-Unsubscribe"] == (
        f"<{personal.unsubscribe_url}>, <mailto:leave@example.org?subject=unsubscribe>"
    )
    assert personal.unsubscribe_url.startswith("https://notes.example.org/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    for name in ("Message-ID", "Date", "From", "To", "Subject", "List-Id", "List-Unsubscribe"):
        assert len(message.get_all(name) or []) == 1, name
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"
    parts(message)


def test_subject_is_the_lessons(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, sequence: Sequence
) -> None:
    message = parse(build(factory, day3, signer))
    assert message["Subject"] == sequence.lesson_on_day(3).subject


def test_every_lesson_is_seven_bit_crlf_and_short_lined(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    for lesson in sequence.lessons:
        prepared = factory.prepare_lesson(sequence, lesson)
        for discreet in (False, True):
            data = build(factory, prepared, signer, name="Zoë Ångström", discreet=discreet)
            assert_wire_format(data)
            message = parse(data)
            assert message.defects == []
            text, page = parts(message)
            day = sequence.day_of(lesson.id)
            assert f"Day {day} of 30" in text
            assert f"Day {day} of 30" in page


def test_day_links_resources_and_disclaimer_in_both_parts(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, config: Config
) -> None:
    for discreet in (False, True):
        text, page = parts(parse(build(factory, day3, signer, discreet=discreet)))
        personal = personal_for(signer, READER)
        for body in (text, page):
            assert "Day 3 of 30" in body
            for url in (personal.unsubscribe_url, personal.manage_url, personal.online_url):
                assert url in body
            # READER chose no country: the default country's lines, in the reader's mode.
            crisis = factory.footers.footer("", discreet)
            for line in crisis.lines:
                for shown in (line.label, line.contact, line.url):
                    assert words(shown) in words(body) or html.escape(shown) in body
            assert words(config.footer.disclaimer) in words(body)
            assert words(crisis.emergency) in words(body)
        assert text.startswith("Hi Sam,\n")
        assert "Hi Sam," in page


def test_non_ascii_name_and_subject_round_trip(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    subject = "Día tres: ¿qué viene? — 日本語のテスト, naïve café"
    lesson = dataclasses.replace(
        sequence.lesson_on_day(3), subject=subject, discreet_subject="Notizen für heute"
    )
    prepared = factory.prepare_lesson(sequence, lesson)
    for name in ("Zoë Ångström", "Сергей Иванов", "李小龙", "Renée O’Connor"):
        data = build(factory, prepared, signer, name=name)
        assert_wire_format(data)
        assert b"=?utf-8?" in data.split(b"\r\n\r\n")[0]
        message = parse(data)
        assert message["Subject"] == subject
        assert message["To"].addresses[0].display_name == name
        text, page = parts(message)
        assert text.startswith(f"Hi {name},\n")
        assert f"Hi {html.escape(name)}," in page
    discreet = parse(build(factory, prepared, signer, name="Zoë", discreet=True))
    assert discreet["Subject"] == "Notizen für heute"


def test_long_non_ascii_subject_folds(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    subject = ("Überlegungen für später " * 7)[:150]
    lesson = dataclasses.replace(sequence.lesson_on_day(4), subject=subject)
    data = build(factory, factory.prepare_lesson(sequence, lesson), signer)
    assert_wire_format(data)
    folded = re.search(rb"^Subject: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*", data, re.M)
    assert folded is not None
    assert max(len(line) for line in folded.group(0).split(b"\r\n")) <= 78
    assert parse(data)["Subject"] == subject


@pytest.mark.parametrize(
    "name",
    ["x" * 2000, "Zoë " * 400, "é" * 1000, 'a"b\\c' * 300],
    ids=["ascii", "words", "é", "quotes"],
)
def test_very_long_names_stay_within_line_limits(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, name: str
) -> None:
    data = build(factory, day3, signer, name=name)
    assert_wire_format(data)
    message = parse(data)
    assert message["To"].addresses[0].addr_spec == READER
    # The name is split into several encoded words. RFC 2047 says the space between them is
    # not part of the text; email.header follows that (the newer address parser keeps it).
    raw = re.search(rb"^To: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", data, re.M)
    assert raw is not None
    unfolded = raw.group(1).decode("ascii").replace("\r\n", "")
    decoded = str(make_header(decode_header(unfolded)))
    assert decoded == f"{clean_header_text(name)} <{READER}>"


def test_non_ascii_sequence_title_keeps_list_id_readable(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    retitled = Sequence(
        id="no-contact",
        title="Treinta días sin contacto",
        description="",
        cadence_days=1,
        phases=sequence.phases,
        lessons=sequence.lessons,
    )
    data = build(factory, factory.prepare_lesson(retitled, retitled.lessons[0]), signer)
    assert_wire_format(data)
    # The list's identifier must stay outside any encoded word, where filters can find it.
    raw_list_id = re.search(rb"^List-Id: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", data, re.M)
    assert raw_list_id is not None
    assert raw_list_id.group(1).endswith(b" <no-contact.example.org>")
    assert parse(data)["List-Id"] == "Treinta días sin contacto <no-contact.example.org>"


def test_editing_sequence_titles_renders_anew(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    lesson = sequence.lesson_on_day(6)
    before = factory.prepare_lesson(sequence, lesson)
    phases = tuple(
        dataclasses.replace(p, title="Rage, explained") if p.id == lesson.phase else p
        for p in sequence.phases
    )
    edited = Sequence(
        id=sequence.id,
        title="Thirty Days Apart",
        description=sequence.description,
        cadence_days=1,
        phases=phases,
        lessons=sequence.lessons,
    )
    after = factory.prepare_lesson(edited, lesson)
    assert after is not before
    message = parse(build(factory, after, signer))
    text, page = parts(message)
    assert message["List-Id"] == "Thirty Days Apart <no-contact.example.org>"
    assert "Day 6 of 30 · Rage, explained" in text
    assert "Rage, explained" in page


# --- discreet mode -----------------------------------------------------------------------------


def test_discreet_from_and_subject(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner, config: Config
) -> None:
    lesson = sequence.lesson_on_day(3)
    assert lesson.discreet_subject
    message = parse(build(factory, factory.prepare_lesson(sequence, lesson), signer, discreet=True))
    assert message["From"].addresses[0].display_name == config.sender.discreet_name
    assert message["From"].addresses[0].addr_spec == config.sender.address
    assert message["Subject"] == lesson.discreet_subject
    text, page = parts(message)
    # The page title is the site's neutral name in both modes (browser history keeps it).
    assert f"<title>{html.escape(config.sender.discreet_name)}</title>" in page
    assert sequence.phase_title(lesson.phase) not in text + page

    plain = dataclasses.replace(lesson, discreet_subject="")
    fallback = parse(build(factory, factory.prepare_lesson(sequence, plain), signer, discreet=True))
    assert fallback["Subject"] == config.sender.discreet_subject


def _normalised(value: str) -> str:
    # "no-contact" in a list id reveals as much as "no contact".
    return re.sub(r"[-_.]+", " ", value.lower())


def test_discreet_headers_reveal_nothing(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    ids = set()
    for lesson in sequence.lessons:
        for variant in (lesson, dataclasses.replace(lesson, discreet_subject="")):
            prepared = factory.prepare_lesson(sequence, variant)
            message = parse(build(factory, prepared, signer, discreet=True))
            for header in ("From", "Subject", "List-Id"):
                value = _normalised(str(message[header]))
                for word in REVEALING:
                    assert word not in value, f"{lesson.id}: {header}: {message[header]}"
            ids.add(str(message["List-Id"]))
    # Still one stable list, so a reader's filter keeps working.
    assert len(ids) == 1


def test_normal_headers_do_name_the_guide(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner
) -> None:
    # The check above must be able to fail: the normal variant does say what it is.
    message = parse(build(factory, day3, signer))
    assert any(word in _normalised(str(message["From"])) for word in REVEALING)


# --- HTML safety -----------------------------------------------------------------------------


def test_html_has_no_remote_resources_or_scripts(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    for lesson in sequence.lessons:
        prepared = factory.prepare_lesson(sequence, lesson)
        for discreet in (False, True):
            _, page = parts(parse(build(factory, prepared, signer, discreet=discreet)))
            lowered = page.lower()
            assert lowered.startswith("<!doctype html>")
            for forbidden in ("<img", "<script", "<link", "<style", "src=", "url("):
                assert forbidden not in lowered, (lesson.id, forbidden)


def test_personal_values_are_escaped_in_html(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner
) -> None:
    name = "<b>Sam</b> & co"
    base = personal_for(signer, READER)
    personal = dataclasses.replace(
        base,
        manage_url="https://notes.example.org/manage/tok?x=1&y=2",
        online_url='https://notes.example.org/l/"onmouseover="alert(1)',
    )
    data = factory.build(day3, Recipient(READER, name), personal, WHEN)
    text, page = parts(parse(data))
    assert "Hi &lt;b&gt;Sam&lt;/b&gt; &amp; co," in page
    assert "<b>Sam</b>" not in page
    assert 'href="https://notes.example.org/manage/tok?x=1&amp;y=2"' in page
    assert '"onmouseover="' not in page
    assert "&quot;onmouseover=&quot;alert(1)" in page
    assert text.startswith("Hi <b>Sam</b> & co,\n")
    assert "https://notes.example.org/manage/tok?x=1&y=2" in text


def test_marker_text_in_a_name_is_not_expanded(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner
) -> None:
    text, page = parts(parse(build(factory, day3, signer, name="[[drg:unsubscribe_url]]")))
    assert text.startswith("Hi [[drg:unsubscribe_url]],\n")
    assert "Hi [[drg:unsubscribe_url]]," in page


# --- header injection ------------------------------------------------------------------------


def header_names(message: EmailMessage) -> list[str]:
    """Every header name, top level and in each part."""
    names = [key.lower() for key in message]
    for part in message.iter_parts():
        names += [f"part:{key.lower()}" for key in part]
    return names


@pytest.mark.parametrize("separator", BREAKS, ids=[repr(b) for b in BREAKS])
def test_name_with_line_break_adds_no_header(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, separator: str
) -> None:
    baseline = header_names(parse(build(factory, day3, signer)))
    name = f"Sam{separator}Bcc: evil@example.com"
    for discreet in (False, True):
        data = build(factory, day3, signer, name=name, discreet=discreet)
        assert_wire_format(data)
        assert not re.search(rb"(?im)^bcc:", data)
        message = parse(data)
        assert header_names(message) == baseline
        assert message["Bcc"] is None
        assert [a.addr_spec for a in message["To"].addresses] == [READER]
        text, _ = parts(message)
        assert text.startswith("Hi Sam Bcc: evil@example.com,\n")


@pytest.mark.parametrize("separator", [*BREAKS, "\x00", "\x1c", "\x7f"], ids=repr)
def test_check_header_text_refuses_breaks(separator: str) -> None:
    with pytest.raises(HeaderInjectionError):
        check_header_text(f"Sam{separator}Bcc: evil@example.com", "name")
    with pytest.raises(HeaderInjectionError):
        encode_text("Subject", f"Hello{separator}Bcc: evil@example.com")
    with pytest.raises(HeaderInjectionError):
        encode_address("Sam", f"reader@example.org{separator}Bcc: evil@example.com")
    assert check_header_text("Sam Bcc: evil@example.com", "name") == "Sam Bcc: evil@example.com"


@pytest.mark.parametrize("separator", ["\r\n", "\n", "\r"], ids=repr)
def test_personal_values_with_line_breaks_are_refused(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, separator: str
) -> None:
    base = personal_for(signer, READER)
    bad = f"{separator}Bcc: evil@example.com"
    for personal in (
        dataclasses.replace(base, unsubscribe_url=base.unsubscribe_url + bad),
        dataclasses.replace(base, message_id=base.message_id + bad),
    ):
        with pytest.raises(HeaderInjectionError):
            factory.build(day3, Recipient(READER, "Sam"), personal, WHEN)
    with pytest.raises(HeaderInjectionError):
        factory.build(day3, Recipient(READER + bad, "Sam"), base, WHEN)


@settings(max_examples=150, deadline=None)
@given(name=st.text())
def test_any_name_adds_no_header_and_parses(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner, name: str
) -> None:
    baseline = header_names(parse(build(factory, day3, signer)))
    data = build(factory, day3, signer, name=name)
    assert_wire_format(data)
    message = parse(data)
    assert message.defects == []
    assert header_names(message) == baseline
    assert [a.addr_spec for a in message["To"].addresses] == [READER]
    cleaned = clean_header_text(name)
    text, page = parts(message)
    greeting = f"Hi {cleaned}," if cleaned else "Hello,"
    assert text.split("\n", 1)[0] == greeting
    assert html.escape(greeting) in page


# --- render once, fill per person ------------------------------------------------------------


def test_prepare_is_cached_and_edits_render_anew(
    factory: MessageFactory, sequence: Sequence
) -> None:
    lesson = sequence.lesson_on_day(5)
    first = factory.prepare_lesson(sequence, lesson)
    assert factory.prepare_lesson(sequence, lesson) is first
    edited = dataclasses.replace(lesson, body=lesson.body + "\nOne more line.\n")
    again = factory.prepare_lesson(sequence, edited)
    assert again is not first
    assert again.key != first.key


def _personal_removed(data: bytes, name: str, email_address: str, personal: Personal) -> str:
    message = parse(data)
    text, page = parts(message)
    headers = "\n".join(
        f"{key}: {value}"
        for key, value in message.items()
        if key not in ("To", "Message-ID", "List-Unsubscribe")
    )
    combined = f"{headers}\n{message['To'].addresses[0].addr_spec}\n{text}\n{page}"
    replacements = {
        personal.unsubscribe_url: "{unsubscribe}",
        personal.manage_url: "{manage}",
        personal.online_url: "{online}",
        f"Hi {name},": "{greeting}",
        email_address: "{email}",
    }
    for value, placeholder in replacements.items():
        assert value in combined
        combined = combined.replace(value, placeholder)
    return combined


def test_two_recipients_differ_only_in_personal_parts(
    factory: MessageFactory, day3: PreparedMessage, signer: LinkSigner
) -> None:
    ann = build(factory, day3, signer, name="Ann", email_address="ann@example.org")
    bob = build(factory, day3, signer, name="Bob", email_address="bob@example.net")
    assert ann != bob
    a = parse(ann)
    b = parse(bob)
    assert a["Message-ID"] != b["Message-ID"]
    assert a["List-Unsubscribe"] != b["List-Unsubscribe"]
    ann_rest = _personal_removed(
        ann, "Ann", "ann@example.org", personal_for(signer, "ann@example.org")
    )
    bob_rest = _personal_removed(
        bob, "Bob", "bob@example.net", personal_for(signer, "bob@example.net")
    )
    assert ann_rest == bob_rest


# --- signed links --------------------------------------------------------------------------


def test_token_round_trip(signer: LinkSigner) -> None:
    payload = ["sub-42", "the-month-ahead"]
    token = signer.token("lesson", payload, WHEN)
    assert signer.load("lesson", token, WHEN + timedelta(days=1)) == payload
    assert signer.url("manage", "manage", "sub-42", WHEN).startswith(
        "https://notes.example.org/manage/"
    )


def test_token_for_another_purpose_is_rejected(signer: LinkSigner) -> None:
    token = signer.token("manage", "sub-42", WHEN)
    with pytest.raises(TokenError) as info:
        signer.load("unsubscribe", token, WHEN)
    assert info.value.expired is False
    with pytest.raises(ValueError, match="unknown token purpose"):
        signer.token("admin", "sub-42", WHEN)


def test_tampered_token_is_rejected(signer: LinkSigner) -> None:
    token = signer.token("unsubscribe", "sub-42", WHEN)
    other = signer.token("unsubscribe", "sub-43", WHEN)
    payload, stamp, signature = token.split(".")
    forged = ".".join((other.split(".")[0], stamp, signature))
    middle = len(signature) // 2
    flipped = (
        signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    )
    for bad in (forged, f"{payload}.{stamp}.{flipped}", token[:-6], "not-a-token"):
        with pytest.raises(TokenError) as info:
            signer.load("unsubscribe", bad, WHEN)
        assert info.value.expired is False
    stranger = LinkSigner(OTHER_LINK_SECRET, signer.public_url, signer.lifetime)
    with pytest.raises(TokenError):
        stranger.load("unsubscribe", token, WHEN)


def test_token_expiry(signer: LinkSigner) -> None:
    token = signer.token("manage", "sub-42", WHEN)
    assert signer.load("manage", token, WHEN + signer.lifetime - timedelta(seconds=1)) == "sub-42"
    later = WHEN + timedelta(days=3650)
    with pytest.raises(TokenError) as info:
        signer.load("manage", token, later)
    assert info.value.expired is True
    assert str(info.value) == "link expired"
    assert signer.load("manage", token, later, expires=False) == "sub-42"


def test_message_id_is_stable_and_distinct(signer: LinkSigner) -> None:
    first = signer.message_id("example.org", "sub-42", "the-month-ahead")
    assert first == signer.message_id("example.org", "sub-42", "the-month-ahead")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", first)
    assert "sub-42" not in first
    others = {
        signer.message_id("example.org", "sub-43", "the-month-ahead"),
        signer.message_id("example.org", "sub-42", "seven-attempts"),
        LinkSigner(OTHER_LINK_SECRET, "https://x.example", timedelta(days=1)).message_id(
            "example.org", "sub-42", "the-month-ahead"
        ),
    }
    assert first not in others
    assert len(others) == 3


def test_lesson_model_is_what_the_factory_renders(
    factory: MessageFactory, sequence: Sequence, signer: LinkSigner
) -> None:
    lesson: Lesson = sequence.lesson_on_day(2)
    text, page = parts(parse(build(factory, factory.prepare_lesson(sequence, lesson), signer)))
    assert lesson.title in text
    assert html.escape(lesson.title) in page
    assert words(lesson.reflection) in words(text)
