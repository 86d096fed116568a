"""Crisis lines per country: each country's footer in both modes, zones, the migration."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, text

from delivery.compose import Composer
from delivery.message import MessageFactory
from guide.config import Config
from guide.crisis import ELSEWHERE, CrisisFooters, FooterConfig, country_of_zone
from guide.lessons import Sequence, load_library
from guide.records import NewSubscriber, Subscriber
from guide.store import MIGRATIONS, Store
from guide.tokens import LinkSigner
from tests.backends import database_url
from tests.harness import LINK_SECRET

__all__ = ["database_url"]

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SHIPPED = ("US", "CA", "GB", "IE", "AU", "NZ")
# What a glance at a discreet footer must not show (issue 10), and the organisations' names.
TOPIC = (
    "hotline",
    "violence",
    "abuse",
    "domestic",
    "refuge",
    "women",
    "respect",
    "suicide",
    "danger",
)
DIRECTORY = "https://findahelpline.com"


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    return load_library(REPO / "lessons")["no-contact"]


@pytest.fixture(scope="module")
def composer() -> Composer:
    config = Config(link_secret=LINK_SECRET)
    signer = LinkSigner(LINK_SECRET, "https://notes.example.org", timedelta(days=30))
    return Composer(config, MessageFactory(config, REPO / "templates"), signer)


def reader(country: str, *, discreet: bool) -> Subscriber:
    """A subscriber row as the store returns it (all fields), with this country and mode."""
    return Subscriber(
        id=7,
        sequence_id="no-contact",
        email="reader@example.org",
        name="Sam",
        timezone="UTC",
        send_time="08:00",
        status="active",
        discreet=discreet,
        country=country,
        generation=0,
        repeats=0,
        next_due_at=NOW,
        last_sent_at=None,
        attempts=0,
        first_failure_at=None,
        last_error=None,
        created_at=NOW,
        confirmed_at=NOW,
        updated_at=NOW,
    )


def footer_parts(data: bytes) -> tuple[str, str]:
    """The text and HTML parts from the footer's first line on, whitespace collapsed."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    found = []
    for subtype in ("plain", "html"):
        part = message.get_body(preferencelist=(subtype,))
        assert part is not None
        content = html.unescape(str(part.get_content()))
        start = content.index("If you need someone to talk to")
        found.append(" ".join(content[start:].split()))
    return found[0], found[1]


@pytest.mark.parametrize("code", SHIPPED)
def test_each_country_footer_lists_its_lines_then_the_directory(
    composer: Composer, sequence: Sequence, code: str
) -> None:
    country = next(c for c in FooterConfig().countries if c.code == code)
    assert len(country.lines) >= 2
    lesson = sequence.lesson_on_day(3)
    normal = composer.lesson(reader(code, discreet=False), sequence, lesson, NOW).data
    discreet = composer.lesson(reader(code, discreet=True), sequence, lesson, NOW).data
    for part in footer_parts(normal):
        where = [
            part.index(" ".join(f"{line.label}: {line.contact}".split())) for line in country.lines
        ]
        assert where == sorted(where), "the lines in their configured order"
        for line in country.lines:
            assert line.url.removeprefix("https://") in part
        assert part.index(DIRECTORY.removeprefix("https://")) > where[-1]
        assert f"call {country.emergency}." in part
    for part in footer_parts(discreet):
        for line in country.lines:
            assert " ".join(f"{line.discreet_label}: {line.contact}".split()) in part
            assert line.label not in part
            assert line.url.removeprefix("https://") not in part
        assert DIRECTORY.removeprefix("https://") in part
        assert f"call {country.emergency}." in part
        lowered = part.lower()
        assert [word for word in TOPIC if word in lowered] == []


@pytest.mark.parametrize("country", ["", ELSEWHERE, "FR"])
def test_readers_elsewhere_get_the_directory_and_the_default(
    composer: Composer, sequence: Sequence, country: str
) -> None:
    data = composer.lesson(reader(country, discreet=False), sequence, sequence.lessons[0], NOW)
    text, page = footer_parts(data.data)
    for part in (text, page):
        assert DIRECTORY.removeprefix("https://") in part
        # Not chosen: the default country (US); elsewhere, or a code since removed: no lines.
        assert ("National Domestic Violence Hotline" in part) is (country == "")
        assert ("call 911." in part) is (country == "")
        if country:
            assert "call your local emergency number." in part


def test_the_confirmation_email_is_discreet_for_every_country(
    composer: Composer, sequence: Sequence
) -> None:
    for code in ("", *SHIPPED):
        data = composer.confirmation(reader(code, discreet=False), sequence, NOW).data
        for part in footer_parts(data):
            lowered = part.lower()
            assert [word for word in TOPIC if word in lowered] == [], code
            assert DIRECTORY.removeprefix("https://") in part


def test_a_footer_is_rendered_once_per_lesson_and_country(
    composer: Composer, sequence: Sequence
) -> None:
    factory = composer.factory
    lesson = sequence.lessons[1]
    us = factory.prepare_lesson(sequence, lesson, "US")
    # '' (not chosen) is the default, US: the same prepared message, not a second render.
    assert factory.prepare_lesson(sequence, lesson, "") is us
    assert factory.prepare_lesson(sequence, lesson, "US") is us
    gb = factory.prepare_lesson(sequence, lesson, "GB")
    assert gb is not us and factory.prepare_lesson(sequence, lesson, "GB") is gb
    # Elsewhere and unknown codes share the no-country footer.
    assert factory.prepare_lesson(sequence, lesson, ELSEWHERE) is factory.prepare_lesson(
        sequence, lesson, "FR"
    )


def test_long_lines_wrap_in_the_text_part_without_breaking_numbers(
    composer: Composer, sequence: Sequence
) -> None:
    data = composer.lesson(reader("US", discreet=False), sequence, sequence.lessons[0], NOW).data
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    body = str(part.get_content()).replace("\r\n", "\n")
    footer = body[body.index("If you need someone to talk to") :]
    assert max(len(line) for line in footer.splitlines()) <= 72
    assert "1-800-799-7233" in footer and "88788" in footer


@pytest.mark.parametrize(
    ("zone", "code"),
    [
        ("America/Chicago", "US"),
        ("Pacific/Honolulu", "US"),
        ("America/Toronto", "CA"),
        ("Europe/London", "GB"),
        ("Europe/Dublin", "IE"),
        ("Australia/Perth", "AU"),
        ("Pacific/Auckland", "NZ"),
        ("Europe/Berlin", ELSEWHERE),
        ("UTC", ""),
        ("Etc/GMT+5", ""),
        ("Not/AZone", ""),
    ],
)
def test_a_timezone_suggests_its_country(zone: str, code: str) -> None:
    footers = FooterConfig().crisis_footers()
    assert footers.for_zone(zone) == code


def test_zones_come_from_the_tz_database() -> None:
    assert country_of_zone("Europe/Berlin") == "DE"
    footers = FooterConfig().crisis_footers()
    assert "America/New_York" in footers.zones_of("US")
    assert set(footers.zones_of("NZ")) == {"Pacific/Auckland", "Pacific/Chatham"}


def test_operators_choose_the_countries(tmp_path: Path) -> None:
    footer = FooterConfig(countries=(), default_country="")
    footers: CrisisFooters = footer.crisis_footers()
    assert footers.choice("US") is None  # not configured: refused on the forms
    assert footers.choice(ELSEWHERE) == ELSEWHERE
    assert footers.for_zone("America/Chicago") == ELSEWHERE
    shown = footers.footer("US", False)
    assert [line.url for line in shown.lines] == [DIRECTORY]
    assert shown.emergency == footer.emergency


# --- the migration ---------------------------------------------------------------------------


def _upgrade_to(revision: str) -> object:
    def run(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


async def test_an_existing_database_gains_the_country_column(
    tmp_path: Path, database_url: str
) -> None:
    path = tmp_path / "state" / "guide.sqlite3"
    old = await Store.open(database_url, sqlite_path=path, migrate=False)
    try:
        async with old.engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0001"))  # type: ignore[arg-type]
            await conn.execute(
                text(
                    "INSERT INTO subscribers (sequence_id, email, email_hash, timezone, "
                    "send_time, status, created_at, updated_at) VALUES ('no-contact', "
                    "'old@example.org', 'h', 'UTC', '08:00', 'active', :now, :now)"
                ),
                {"now": NOW.replace(tzinfo=None)},
            )
    finally:
        await old.close()
    store = await Store.open(database_url, sqlite_path=path)
    try:
        existing = await store.get(1)
        assert existing is not None and existing.country == ""  # not chosen: the default
        added, _ = await store.add(
            NewSubscriber("new@example.org", "no-contact", "UTC", "08:00", country="IE"),
            status="active",
            now=NOW,
            next_due_at=NOW,
            actor="test",
        )
        claimed = await store.claim_due(NOW, 10, "node", NOW + timedelta(minutes=5))
        assert {s.email: s.country for s in claimed} == {"new@example.org": "IE"}
        changed = await store.change(added.id, now=NOW, actor="test", country="GB")
        assert changed is not None and changed.country == "GB"
        assert await store.erase(added.id, now=NOW, actor="test")
        erased = await store.get(added.id)
        assert erased is not None and erased.country == ""  # where someone lives: gone too
    finally:
        await store.close()
