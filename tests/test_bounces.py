"""Bounce processing: signed VERP senders, DSN and ARF parsing, and what each report changes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from delivery.bounces import (
    BOUNCED,
    COMPLAINT,
    DELAYED,
    HELD,
    IGNORED,
    parse_message,
    read_report,
)
from delivery.transports import MaildirTransport, MemoryTransport
from delivery.verp import ReturnPath
from guide.bounce_config import BounceConfig
from guide.config import SenderConfig, load_config
from guide.errors import ConfigError
from guide.records import NewSubscriber, Subscriber
from guide.schema import events
from scheduler import subscribers as life
from scheduler.bounces import UNCHANGED, UNSUBSCRIBED, UNVERIFIED, BounceProcessor
from tests.harness import (
    LINK_SECRET,
    OTHER_LINK_SECRET,
    REPO,
    Clock,
    config_for,
    make_parts,
)
from wiring import Parts

DATA = Path(__file__).resolve().parent / "data" / "bounces"
START = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
SENDER = SenderConfig(address="guide@guide.test")
ON = BounceConfig(enabled=True)


def fixture(name: str, bounce: str, recipient: str = "reader@reader.test") -> bytes:
    """A report from tests/data/bounces with the bounce address and recipient filled in."""
    text = (DATA / name).read_text(encoding="ascii")
    return text.replace("{{bounce}}", bounce).replace("{{recipient}}", recipient).encode()


# --- the signed bounce address --------------------------------------------------------------


def test_bounce_address_names_subscriber_and_generation_and_survives_case_changes() -> None:
    path = ReturnPath(LINK_SECRET, "bounce", "guide.test")
    address = path.address(4217, 3)
    local, _, domain = address.partition("@")
    assert domain == "guide.test"
    assert local.startswith("bounce+4217-3-")
    assert len(local) <= 64  # RFC 5321's limit on a local part
    assert local == local.lower()
    assert path.verify(address) == (found := path.verify(f"<{address.upper()}>"))
    assert found is not None and (found.subscriber_id, found.generation) == (4217, 3)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.replace("bounce+4217-", "bounce+4218-"),  # another subscriber
        lambda a: a.replace("-3-", "-4-"),  # another generation
        lambda a: a[:-12] + ("b" if a[-12] != "b" else "c") + a[-11:],  # one MAC letter
        lambda a: a.replace("bounce+", "return+"),  # not our prefix
        lambda a: a.replace("+", "-", 1),
        lambda a: "bounce@guide.test",
        lambda a: "",
    ],
    ids=["subscriber", "generation", "mac", "prefix", "no-plus", "bare", "empty"],
)
def test_an_altered_bounce_address_does_not_verify(change: object) -> None:
    path = ReturnPath(LINK_SECRET, "bounce", "guide.test")
    assert callable(change)
    assert path.verify(change(path.address(4217, 3))) is None


def test_another_secret_makes_other_addresses() -> None:
    ours = ReturnPath(LINK_SECRET, "bounce", "guide.test")
    theirs = ReturnPath(OTHER_LINK_SECRET, "bounce", "guide.test")
    assert ours.address(1, 1) != theirs.address(1, 1)
    assert ours.verify(theirs.address(1, 1)) is None


# --- reading reports ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outcome", "status"),
    [
        ("postfix-unknown-user.eml", BOUNCED, "5.1.1"),
        ("postfix-delayed.eml", DELAYED, "4.2.2"),
        # Exim says 5.0.0; the remote server's reply names the policy refusal.
        ("exim-policy.eml", HELD, "5.7.1"),
        ("gmail-no-such-account.eml", BOUNCED, "5.1.1"),
        ("arf-complaint.eml", COMPLAINT, ""),
        ("postfix-delivered.eml", IGNORED, "2.0.0"),
        ("vacation-reply.eml", IGNORED, ""),
    ],
)
def test_each_report_format_is_read(name: str, outcome: str, status: str) -> None:
    report = read_report(parse_message(fixture(name, "bounce+1-1-x@guide.test")))
    assert (report.outcome, report.status) == (outcome, status)
    if outcome in (BOUNCED, HELD, DELAYED):
        assert status in report.reply  # the server's own words are kept for the operator
        assert "\n" not in report.describe()


def test_report_text_is_one_bounded_line() -> None:
    data = fixture("postfix-unknown-user.eml", "bounce+1-1-x@guide.test")
    data = data.replace(b"no such user here\n", b"no such user \x1b[31mhere" + b" x" * 2000 + b"\n")
    report = read_report(parse_message(data))
    assert report.outcome == BOUNCED
    assert len(report.describe()) <= 506
    assert "\x1b" not in report.describe()


# --- what reports do to subscribers ---------------------------------------------------------


@dataclass
class World:
    """A service with signed bounce addresses, on a real SQLite file and a memory transport."""

    parts: Parts
    clock: Clock
    transport: MemoryTransport

    def processor(self) -> BounceProcessor:
        composer = self.parts.composer
        assert composer.return_path is not None
        return BounceProcessor(self.parts.store, composer.return_path, self.clock)

    async def add(self, address: str) -> Subscriber:
        new = NewSubscriber(address, "no-contact", "UTC", "08:00")
        sub, created = await life.add(self.parts.store, new, now=self.clock.now, actor="test")
        assert created
        return sub

    async def get(self, subscriber_id: int) -> Subscriber:
        sub = await self.parts.store.get(subscriber_id)
        assert sub is not None
        return sub

    async def day(self) -> dict[str, str]:
        """Move to 08:00 UTC of the next day, run a pass; recipient → envelope sender."""
        self.clock.now = self.clock.now.replace(hour=8) + (
            timedelta(days=1) if self.clock.now.hour >= 8 else timedelta()
        )
        before = len(self.transport.outbox)
        await self.parts.dispatcher.tick()
        return {e.recipient: e.sender for e in self.transport.outbox[before:]}


@pytest.fixture(name="w")
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(START)
    transport = MemoryTransport()
    config = dataclasses.replace(config_for(tmp_path), sender=SENDER, bounces=ON)
    parts = await make_parts(config, clock, transport)
    try:
        yield World(parts, clock, transport)
    finally:
        await parts.close()


async def test_every_lesson_goes_out_with_its_subscribers_signed_bounce_address(w: World) -> None:
    alice, bea = await w.add("alice@reader.test"), await w.add("bea@reader.test")
    senders = await w.day()
    path = w.processor().return_path
    assert set(senders) == {"alice@reader.test", "bea@reader.test"}
    assert path.verify(senders["alice@reader.test"]) == path.verify(
        path.address(alice.id, alice.generation)
    )
    assert path.verify(senders["bea@reader.test"]) == path.verify(path.address(bea.id, 0))
    assert senders["alice@reader.test"] != senders["bea@reader.test"]
    assert all(s.startswith("bounce+") and s.endswith("@guide.test") for s in senders.values())


async def test_a_hard_bounce_stops_the_subscriber_and_the_next_pass_sends_nothing(
    w: World,
) -> None:
    alice, bea = await w.add("alice@reader.test"), await w.add("bea@reader.test")
    senders = await w.day()
    processor = w.processor()
    report = fixture("gmail-no-such-account.eml", senders["alice@reader.test"], "alice@reader.test")
    assert await processor.handle(report) == BOUNCED

    stopped = await w.get(alice.id)
    assert stopped.status == "bounced"
    assert stopped.next_due_at is None
    assert stopped.last_error is not None and stopped.last_error.startswith("5.1.1 smtp; 550")
    async with w.parts.store.engine.connect() as conn:
        rows = (await conn.execute(select(events).where(events.c.subscriber_id == alice.id))).all()
    last = rows[-1]
    assert (last.old_status, last.new_status, last.actor) == ("active", "bounced", "bounces")
    assert last.reason.startswith("bounce report: 5.1.1")

    assert set(await w.day()) == {"bea@reader.test"}  # alice gets nothing more
    assert (await w.get(bea.id)).status == "active"
    # The same report again changes nothing, and says so.
    assert await processor.handle(report) == UNCHANGED
    assert processor.tally.line() == (
        "bounces: 2 read: 1 bounced, 0 held, 0 delayed, 0 unsubscribed, 1 unchanged, "
        "0 ignored, 0 unverified"
    )


async def test_policy_refusal_holds_and_alerts_delay_is_noted_complaint_unsubscribes(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    held, late, angry = [await w.add(f"{n}@reader.test") for n in ("held", "late", "angry")]
    senders = await w.day()
    processor = w.processor()

    def report(name: str, who: Subscriber) -> bytes:
        assert who.email is not None
        return fixture(name, senders[who.email], who.email)

    assert await processor.handle(report("exim-policy.eml", held)) == HELD
    assert await processor.handle(report("postfix-delayed.eml", late)) == DELAYED
    assert await processor.handle(report("arf-complaint.eml", angry)) == UNSUBSCRIBED
    assert await processor.handle(report("vacation-reply.eml", late)) == IGNORED

    assert (await w.get(held.id)).status == "held"
    assert [r.levelname for r in caplog.records if "held" in r.getMessage()] == ["ERROR"]
    assert f"subscribers resume {held.id}" in caplog.text
    noted = await w.get(late.id)
    assert (noted.status, noted.last_error) == ("active", None)  # a delay changes nothing
    async with w.parts.store.engine.connect() as conn:
        reasons = (
            await conn.execute(select(events.c.reason).where(events.c.subscriber_id == late.id))
        ).scalars()
        assert "delivery delayed: 4.2.2 smtp; 452 4.2.2 Mailbox full" in list(reasons)
    gone = await w.get(angry.id)
    assert (gone.status, gone.next_due_at) == ("unsubscribed", None)
    assert gone.last_error is not None and gone.last_error.startswith("complaint")
    assert set(await w.day()) == {"late@reader.test"}
    assert processor.tally.line() == (
        "bounces: 4 read: 0 bounced, 1 held, 1 delayed, 1 unsubscribed, 0 unchanged, "
        "1 ignored, 0 unverified"
    )


async def test_the_subscriber_comes_only_from_a_verified_address_never_the_body(
    w: World,
) -> None:
    alice = await w.add("alice@reader.test")
    bea = await w.add("bea@reader.test")
    senders = await w.day()
    path = w.processor().return_path
    processor = w.processor()
    local, _, domain = path.address(alice.id, 0).partition("@")
    forged = f"{local[:-16]}{'a' * 16}@{domain}"  # right shape, wrong MAC
    assert path.verify(forged.replace("a" * 16, local[-16:])) is not None
    foreign = ReturnPath(OTHER_LINK_SECRET, "bounce", "guide.test").address(alice.id, 0)
    for address in (forged, foreign, "guide@guide.test"):
        # The body names alice; only the address it was delivered to may say who it is about.
        data = fixture("postfix-unknown-user.eml", address, "alice@reader.test")
        assert await processor.handle(data) == UNVERIFIED
    # bea's signed address names bea, whatever the report says inside.
    data = fixture("postfix-unknown-user.eml", senders["bea@reader.test"], "alice@reader.test")
    assert await processor.handle(data) == BOUNCED
    assert (await w.get(alice.id)).status == "active"
    assert (await w.get(bea.id)).status == "bounced"
    assert processor.tally.unverified == 3


async def test_the_envelope_recipient_verifies_when_headers_do_not(w: World) -> None:
    alice = await w.add("alice@reader.test")
    senders = await w.day()
    data = fixture("postfix-unknown-user.eml", "someone@elsewhere.test", "alice@reader.test")
    processor = w.processor()
    assert await processor.handle(data) == UNVERIFIED
    assert await processor.handle(data, [senders["alice@reader.test"]]) == BOUNCED
    assert (await w.get(alice.id)).status == "bounced"


async def test_a_bounce_from_before_a_new_sign_up_is_stale(w: World) -> None:
    alice = await w.add("alice@reader.test")
    old = (await w.day())["alice@reader.test"]
    await w.parts.store.change(alice.id, now=w.clock.now, actor="test", generation=1)
    processor = w.processor()
    assert await processor.handle(fixture("postfix-unknown-user.eml", old)) == IGNORED
    assert (await w.get(alice.id)).status == "active"
    # A complaint is the reader's wish, whenever the message was sent.
    assert await processor.handle(fixture("arf-complaint.eml", old)) == UNSUBSCRIBED


async def test_without_bounces_enabled_the_sender_address_is_the_envelope_sender(
    tmp_path: Path,
) -> None:
    clock = Clock(START)
    transport = MaildirTransport(tmp_path / "outbox")
    config = dataclasses.replace(config_for(tmp_path), sender=SENDER)
    parts = await make_parts(config, clock, transport)
    try:
        new = NewSubscriber("alice@reader.test", "no-contact", "UTC", "08:00")
        await life.add(parts.store, new, now=clock.now, actor="test")
        clock.now = START.replace(hour=8)
        await parts.dispatcher.tick()
    finally:
        await parts.close()
    (written,) = (tmp_path / "outbox" / "new").iterdir()
    assert written.read_bytes().startswith(b"Return-Path: <guide@guide.test>\r\nDate: ")


async def test_the_maildir_transport_writes_the_signed_return_path(tmp_path: Path) -> None:
    clock = Clock(START)
    transport = MaildirTransport(tmp_path / "outbox")
    config = dataclasses.replace(config_for(tmp_path), sender=SENDER, bounces=ON)
    parts = await make_parts(config, clock, transport)
    try:
        new = NewSubscriber("alice@reader.test", "no-contact", "UTC", "08:00")
        alice, _ = await life.add(parts.store, new, now=clock.now, actor="test")
        clock.now = START.replace(hour=8)
        await parts.dispatcher.tick()
        expected = parts.composer.envelope_sender(alice)
    finally:
        await parts.close()
    (written,) = (tmp_path / "outbox" / "new").iterdir()
    first = written.read_bytes().split(b"\r\n", 1)[0]
    assert first == f"Return-Path: <{expected}>".encode()
    assert expected.startswith(f"bounce+{alice.id}-{alice.generation}-")


# --- configuration --------------------------------------------------------------------------


def test_the_shipped_config_has_bounces_off_and_the_defaults() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.bounces == BounceConfig()
    assert config.bounces.enabled is False
    assert config.bounces.domain_for("guide.test") == "guide.test"


@pytest.mark.parametrize("local_part", ["Bounce", "bounce+x", "-bounce", "a b", ""])
def test_a_local_part_that_a_relay_could_change_is_refused(tmp_path: Path, local_part: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f'bounces:\n  enabled: true\n  local_part: "{local_part}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.source) == ("bounces.local_part", f"{path}:3")


def test_a_configured_domain_is_the_bounce_addresses_domain(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("bounces:\n  enabled: true\n  domain: bounces.guide.test\n", encoding="utf-8")
    config = load_config(path, env={})
    made = ReturnPath.from_config(config.bounces, config.sender.domain, LINK_SECRET)
    assert made.address(7, 0).endswith("@bounces.guide.test")
