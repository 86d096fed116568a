"""The daily loop against a real aiosmtpd and SQLite file: downtime, faults, edits, stopping."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session
from sqlalchemy import func, select

from delivery.transports import MemoryTransport, SendResult, SMTPTransport, Status
from guide.errors import TransportConfigError
from guide.progress import choose_next
from guide.schema import deliveries, subscribers
from scheduler.schedule import local_send_instant
from tests.harness import (
    LESSONS,
    Clock,
    add_many,
    by_recipient,
    config_for,
    date_of,
    day_of,
    make_parts,
    message_id_of,
    next_due,
)
from tests.smtpd import Fault, RecordingSMTP, SMTPServers, smtp_servers

__all__ = ["smtp_servers"]

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


async def run_until(parts: Any, clock: Clock, end: datetime) -> int:
    """Tick at every due time before `end`; the number of ticks."""
    ticks = 0
    while (due := await next_due(parts)) is not None and due < end:
        clock.now = max(due, clock.now)
        await parts.dispatcher.tick()
        ticks += 1
        assert ticks < 10_000
    return ticks


async def statuses(parts: Any) -> dict[str, int]:
    async with parts.store.engine.connect() as conn:
        rows = await conn.execute(
            select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
        )
        return {str(status): int(n) for status, n in rows}


def test_choose_next_follows_the_current_order() -> None:
    order = ["a", "b", "c", "d"]
    assert choose_next(order, []) == "a"
    assert choose_next(order, ["a", "b"]) == "c"
    assert choose_next(["b", "a", "c", "d"], ["a"]) == "c"  # reordered: never back to b
    assert choose_next(["a", "x", "b", "c"], ["a", "b"]) == "c"  # inserted before: skipped
    assert choose_next(["a", "c", "d"], ["a", "b"]) == "c"  # b removed: fall back to a
    assert choose_next(order, ["a", "b", "c", "d"]) is None
    assert choose_next(order, ["b", "skipped-c", "d"]) is None


async def test_after_three_days_down_each_overdue_subscriber_gets_one_lesson(
    tmp_path: Path, smtp_servers: SMTPServers
) -> None:
    server = await smtp_servers.start()
    clock = Clock(START)
    parts = await make_parts(config_for(tmp_path), clock, SMTPTransport(server.smtp_config()))
    zones = ["Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Sydney", "UTC"]
    people = [
        (f"d{i}@example.org", zones[i % 5], f"{6 + i % 12:02d}:{(i * 7) % 60:02d}")
        for i in range(60)
    ]
    await add_many(parts, people, START)
    try:
        await run_until(parts, clock, START + timedelta(days=3))
        assert len(server.messages) == 60 * 3
        # The service is down for three days; it returns at 10:00 UTC.
        back = START + timedelta(days=6, hours=10)
        clock.now = back
        await parts.dispatcher.tick()
        assert len(server.messages) == 60 * 4  # exactly one each, no flood
        await parts.dispatcher.tick()
        assert len(server.messages) == 60 * 4
        await run_until(parts, clock, back + timedelta(days=2))
    finally:
        await parts.close()
    settings = {a: (z, at) for a, z, at in people}
    for address, messages in by_recipient(
        [(m.rcpt_tos[0], m.data) for m in server.messages]
    ).items():
        zone = ZoneInfo(settings[address][0])
        hour, minute = map(int, settings[address][1].split(":"))
        days = [day_of(m) for m in messages]
        assert days == list(range(1, len(days) + 1))  # nothing skipped, nothing twice
        sent = [date_of(m) for m in messages]
        assert sent[3] == back  # the catch-up lesson went when the service came back
        for instant in sent[4:]:  # then the subscriber's own time again
            local = instant.astimezone(zone)
            assert instant == local_send_instant(local.date(), time(hour, minute), zone)
        local_days = [s.astimezone(zone).date() for s in sent]
        assert len(set(local_days)) == len(local_days)


async def test_relay_faults_are_retried_bounced_or_held(
    tmp_path: Path, smtp_servers: SMTPServers
) -> None:
    server = await smtp_servers.start()
    refuse = {
        "gone@example.org": "550 5.1.1 No such user",
        "blocked@example.org": "554 5.7.1 Rejected by policy",
    }
    original = server.handler.handle_RCPT

    async def handle_rcpt(
        srv: RecordingSMTP,
        session: Session,
        envelope: SMTPEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        if address in refuse:
            return refuse[address]
        return await original(srv, session, envelope, address, options)

    server.handler.handle_RCPT = handle_rcpt  # type: ignore[method-assign, assignment]
    clock = Clock(START)
    parts = await make_parts(
        config_for(tmp_path, connections=2), clock, SMTPTransport(server.smtp_config())
    )
    people = [(f"r{i}@example.org", "UTC", "09:00") for i in range(30)]
    people += [(address, "UTC", "09:00") for address in refuse]
    await add_many(parts, people, START)
    faults: list[Fault | None] = []
    rng = __import__("random").Random(3)
    for _ in range(120):
        faults.append(
            rng.choice(
                [
                    None,
                    Fault.reply_at("RCPT", "450 4.2.0 Mailbox busy"),
                    Fault.reply_at("DATA", "451 4.3.0 Try again later"),
                    Fault.reply_at("MAIL", "421 4.7.0 Too many connections"),
                    Fault.disconnect_at("DATA"),
                ]
            )
        )
    server.script(*faults)
    try:
        await run_until(parts, clock, START + timedelta(days=1, hours=9))
    finally:
        await parts.close()
    first_day = [m for m in server.messages if day_of(m.data) == 1]
    assert sorted(m.rcpt_tos[0] for m in first_day) == sorted(
        a for a, _, _ in people if a not in refuse
    )
    reopened = await make_parts(config_for(tmp_path), clock, SMTPTransport(server.smtp_config()))
    try:
        gone = await reopened.store.find("gone@example.org")
        blocked = await reopened.store.find("blocked@example.org")
        assert gone is not None and gone.status == "bounced" and "5.1.1" in (gone.last_error or "")
        assert (
            blocked is not None
            and blocked.status == "held"
            and "5.7.1" in (blocked.last_error or "")
        )
        assert (await statuses(reopened))["active"] == 30
    finally:
        await reopened.close()


async def test_transient_failures_give_up_after_the_retry_lifetime(tmp_path: Path) -> None:
    transport = MemoryTransport()
    transport.script.extend([SendResult(Status.TRANSIENT, 451, "4.3.0 Later")] * 100)
    clock = Clock(START)
    parts = await make_parts(
        config_for(tmp_path, retry_lifetime=timedelta(days=1)), clock, transport
    )
    await add_many(parts, [("late@example.org", "UTC", "09:00")], START)
    try:
        waits = []
        while (due := await next_due(parts)) is not None:
            waits.append(due - clock.now)
            clock.now = due
            await parts.dispatcher.tick()
        sub = await parts.store.find("late@example.org")
        assert sub is not None and sub.status == "undeliverable"
        assert sub.attempts >= 5
        # Backoff grew: 1 min, 5 min, 30 min, 2 h, then 6 h steps until a day had passed.
        assert waits[1:5] == [
            timedelta(minutes=1),
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=2),
        ]
        assert transport.outbox == []
    finally:
        await parts.close()


async def test_authentication_failure_stops_sending_and_names_the_key(
    tmp_path: Path, smtp_servers: SMTPServers
) -> None:
    server = await smtp_servers.start(starttls=True, credentials=("guide", "right"))
    clock = Clock(START + timedelta(hours=10))
    transport = SMTPTransport(server.smtp_config(password="wrong"))
    parts = await make_parts(config_for(tmp_path), clock, transport)
    await add_many(parts, [(f"a{i}@example.org", "UTC", "09:00") for i in range(5)], START)
    try:
        report = await parts.dispatcher.tick()
        assert "smtp.username" in report.halted
        assert isinstance(parts.dispatcher.halted, TransportConfigError)
        assert server.messages == []
        # Nobody was marked failed or advanced; their leases are free for the next start.
        async with parts.store.engine.connect() as conn:
            rows = (await conn.execute(select(subscribers))).mappings().all()
        assert all(
            r["status"] == "active" and r["attempts"] == 0 and r["lease_owner"] is None
            for r in rows
        )
    finally:
        await parts.close()


def copy_lessons(tmp_path: Path) -> Path:
    root = tmp_path / "lessons"
    shutil.copytree(LESSONS, root)
    return root


def edit_order(root: Path, change: Any) -> None:
    path = root / "no-contact" / "sequence.yaml"
    data = yaml.safe_load(path.read_text())
    data["lessons"] = change(data["lessons"])
    # Catch-up lessons must still be in the order: keep those that are.
    if "catch_up" in data:
        data["catch_up"] = [i for i in data["catch_up"] if i in data["lessons"]]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def test_lesson_edits_mid_sequence_never_resend_or_crash(tmp_path: Path) -> None:
    root = copy_lessons(tmp_path)
    transport = MemoryTransport()
    clock = Clock(START)
    parts = await make_parts(config_for(tmp_path, lessons=root), clock, transport)
    await add_many(
        parts, [(f"e{i}@example.org", "Europe/London", "08:00") for i in range(10)], START
    )
    sent: dict[str, list[str]] = {}
    try:
        await run_until(parts, clock, START + timedelta(days=5))  # lessons 1-5 delivered
        original = yaml.safe_load((root / "no-contact" / "sequence.yaml").read_text())["lessons"]
        # Reorder: lesson 2 (sent) moves to day 9, with its phase; lessons 7 and 6 swap.
        moved = root / "no-contact" / f"{original[1]}.yaml"
        moved.write_text(
            moved.read_text().replace("phase: going-no-contact", "phase: narcissistic-rage")
        )
        reordered = [*original[:1], *original[2:5], original[6], original[5], *original[7:9]]
        edit_order(root, lambda ids: [*reordered, original[1], *ids[9:]])
        await run_until(parts, clock, START + timedelta(days=7))
        # Insert a new lesson after the current position, remove an upcoming one.
        new = root / "no-contact" / "a-new-lesson.yaml"
        text = (root / "no-contact" / f"{original[9]}.yaml").read_text()
        new.write_text(text.replace(f"id: {original[9]}", "id: a-new-lesson"))
        edit_order(
            root,
            lambda ids: [
                *[i for i in ids if i != original[10]][:8],
                "a-new-lesson",
                *[i for i in ids if i != original[10]][8:],
            ],
        )
        (root / "no-contact" / f"{original[10]}.yaml").unlink()
        await run_until(parts, clock, START + timedelta(days=10))
        # A broken edit is refused and the last good version keeps going out.
        (root / "no-contact" / f"{original[12]}.yaml").write_text("id: [unclosed\n")
        await run_until(parts, clock, START + timedelta(days=12))
        assert parts.library.error is not None
        async with parts.store.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.subscriber_id, deliveries.c.lesson_id).order_by(deliveries.c.id)
            )
            for sid, lesson in rows:
                sent.setdefault(str(sid), []).append(str(lesson))
    finally:
        await parts.close()
    assert len(transport.outbox) == 10 * 12
    for lessons in sent.values():
        assert len(lessons) == len(set(lessons)) == 12  # never the same lesson twice
        assert lessons[:7] == [*original[:5], original[6], original[5]]  # the new order
        assert lessons.count(original[1]) == 1  # moved past the current position: not re-sent
        assert original[10] not in lessons  # removed before it was due
        assert "a-new-lesson" in lessons


async def test_stop_lets_in_flight_sends_finish_and_releases_leases(
    tmp_path: Path, smtp_servers: SMTPServers
) -> None:
    server = await smtp_servers.start()
    gate = asyncio.Event()
    arrived = asyncio.Event()
    original = server.handler.handle_DATA

    async def slow_data(srv: RecordingSMTP, session: Session, envelope: SMTPEnvelope) -> str:
        arrived.set()
        await gate.wait()
        return await original(srv, session, envelope)

    server.handler.handle_DATA = slow_data  # type: ignore[method-assign, assignment]
    clock = Clock(START + timedelta(hours=10))
    config = config_for(tmp_path, connections=2, batch_size=50)
    parts = await make_parts(config, clock, SMTPTransport(server.smtp_config()))
    await add_many(parts, [(f"s{i}@example.org", "UTC", "09:00") for i in range(40)], START)
    try:
        tick = asyncio.create_task(parts.dispatcher.tick())
        await asyncio.wait_for(arrived.wait(), 10)
        parts.dispatcher.stop()
        gate.set()
        report = await asyncio.wait_for(tick, 30)
        in_flight = len(server.messages)
        assert 1 <= in_flight <= 2  # only what was already on the wire
        assert report.results["sent"] == in_flight
        async with parts.store.engine.connect() as conn:
            leased = (
                await conn.execute(
                    select(func.count()).where(subscribers.c.lease_owner.is_not(None))
                )
            ).scalar()
            recorded = (await conn.execute(select(func.count()).select_from(deliveries))).scalar()
        assert leased == 0
        assert recorded == in_flight
    finally:
        await parts.close()


async def test_rate_limit_spaces_sends(tmp_path: Path) -> None:
    from scheduler.ratelimit import RateLimiter

    moments: list[float] = []
    fake = [0.0]

    async def sleep(seconds: float) -> None:
        fake[0] += seconds

    limiter = RateLimiter(2, 0, monotonic=lambda: fake[0], sleep=sleep)
    for _ in range(7):
        await limiter.acquire()
        moments.append(fake[0])
    assert moments[:2] == [0.0, 0.0]  # a burst of one second's worth
    assert moments[-1] == pytest.approx(2.5)  # then two a second
    hourly = RateLimiter(0, 3600, monotonic=lambda: fake[0], sleep=sleep)
    start = fake[0]
    for _ in range(61):
        await hourly.acquire()
    assert fake[0] - start == pytest.approx(1.0)  # 60 at once, then one a second


async def test_message_ids_are_stable_across_a_resend(tmp_path: Path) -> None:
    transport = MemoryTransport()
    clock = Clock(START + timedelta(hours=10))
    parts = await make_parts(config_for(tmp_path), clock, transport)
    await add_many(parts, [("m@example.org", "UTC", "09:00")], START)
    try:
        sub = await parts.store.find("m@example.org")
        assert sub is not None
        first = parts.dispatcher.plan(sub, [], parts.library.current(), clock.now)
        again = parts.dispatcher.plan(
            sub, [], parts.library.current(), clock.now + timedelta(minutes=5)
        )
        assert first.build is not None and again.build is not None
        first_data = first.build(clock.now).data
        again_data = again.build(clock.now + timedelta(minutes=5)).data
        assert message_id_of(first_data) == message_id_of(again_data) == first.message_id
        second = parts.dispatcher.plan(sub, [first.lesson_id], parts.library.current(), clock.now)
        assert second.message_id != first.message_id
    finally:
        await parts.close()


class _SlowRelay(MemoryTransport):
    """Each hand-over takes 40 minutes of the injected clock, like a per-hour rate limit."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.handed_over: list[datetime] = []

    async def connect(self) -> Any:
        inner = await super().connect()
        relay = self

        class Slow:
            async def send(self, envelope: Any) -> SendResult:
                relay.handed_over.append(relay.clock.now)
                result = await inner.send(envelope)
                relay.clock.advance(timedelta(minutes=40))
                return result

            async def close(self) -> None:
                await inner.close()

        return Slow()


async def test_every_message_is_dated_when_it_is_handed_over(tmp_path: Path) -> None:
    # SpamAssassin's DATE_IN_PAST_03_06: a Date hours before the Received line costs +2.4.
    clock = Clock(START + timedelta(hours=10))
    relay = _SlowRelay(clock)
    parts = await make_parts(config_for(tmp_path, connections=1), clock, relay)
    people = [(f"d{i}@example.org", "UTC", "09:00") for i in range(4)]
    await add_many(parts, people, START)
    try:
        pass_start = clock.now
        report = await parts.dispatcher.tick()
        assert report.results["sent"] == 4
        dates = [date_of(envelope.data) for envelope in relay.outbox]
        assert dates == relay.handed_over
        assert dates[-1] - pass_start == timedelta(minutes=120)
    finally:
        await parts.close()
