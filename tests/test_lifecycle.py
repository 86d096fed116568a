"""Subscriber lifecycle and the store, in process, on a real SQLite file with a memory transport."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, select

from delivery.transports import MemoryTransport, SendResult, Status
from guide.errors import LifecycleError
from guide.lessons import Sequence
from guide.records import NewSubscriber, Stop, Subscriber, email_hash
from guide.schema import subscribers
from guide.store import MIGRATIONS, Store
from scheduler import subscribers as life
from tests.harness import (
    LESSONS,
    LINK_SECRET,
    Clock,
    config_for,
    day_of,
    make_parts,
    message_id_of,
)
from wiring import Parts

ROOT = Path(__file__).resolve().parent.parent
# A Monday in March: Europe/Berlin is UTC+1 (summer time starts on the 29th).
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


@dataclass
class World:
    """One service on a fresh SQLite file, with the clock at START."""

    parts: Parts
    clock: Clock
    transport: MemoryTransport

    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def sequences(self) -> dict[str, Sequence]:
        return self.parts.library.current()

    @property
    def order(self) -> list[str]:
        return [lesson.id for lesson in self.sequences["no-contact"].lessons]


@pytest.fixture(name="w")
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(START)
    transport = MemoryTransport()
    parts = await make_parts(config_for(tmp_path), clock, transport)
    try:
        yield World(parts, clock, transport)
    finally:
        await parts.close()


async def add(
    w: World, address: str, *, zone: str = "UTC", at: str = "08:00", name: str = ""
) -> Subscriber:
    new = NewSubscriber(
        email=address, sequence_id="no-contact", timezone=zone, send_time=at, name=name
    )
    sub, created = await life.add(w.store, new, now=w.clock.now, actor="test")
    assert created
    return sub


async def get(w: World, subscriber_id: int) -> Subscriber:
    sub = await w.store.get(subscriber_id)
    assert sub is not None
    return sub


async def deliver(w: World, subscriber_id: int) -> bytes:
    """Move the clock to the subscriber's due time, tick, and return the one message sent."""
    sub = await get(w, subscriber_id)
    assert sub.next_due_at is not None, f"subscriber {subscriber_id} is not scheduled"
    w.clock.now = max(w.clock.now, sub.next_due_at)
    before = len(w.transport.outbox)
    await w.parts.dispatcher.tick()
    assert len(w.transport.outbox) == before + 1
    return w.transport.outbox[-1].data


async def audit(w: World, subscriber_id: int) -> list[tuple[str | None, str | None, str, str]]:
    _, events = await w.store.history(subscriber_id)
    return [(e["old_status"], e["new_status"], e["actor"], e["reason"]) for e in events]


async def test_pause_stops_sending_and_resume_reschedules_and_clears_failures(w: World) -> None:
    sub = await add(w, "pause@example.org", zone="Europe/Berlin", at="07:30")
    assert sub.next_due_at == datetime(2026, 3, 2, 6, 30, tzinfo=UTC)
    w.transport.script.append(SendResult(Status.TRANSIENT, 451, "4.3.0 Try again later"))
    w.clock.now = sub.next_due_at
    assert (await w.parts.dispatcher.tick()).results["retry"] == 1
    failing = await get(w, sub.id)
    assert failing.attempts == 1 and failing.first_failure_at == w.clock.now
    assert failing.last_error is not None and "4.3.0" in failing.last_error

    paused = await life.pause(w.store, failing, now=w.clock.now, actor="web")
    assert paused.status == "paused" and paused.next_due_at is None
    with pytest.raises(LifecycleError, match="only active"):
        await life.pause(w.store, paused, now=w.clock.now, actor="web")
    w.clock.now = datetime(2026, 3, 4, 6, 30, tzinfo=UTC)
    assert (await w.parts.dispatcher.tick()).claimed == 0
    assert w.transport.outbox == []

    w.clock.now = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # after today's 07:30 in Berlin
    resumed = await life.resume(w.store, paused, w.sequences, now=w.clock.now, actor="web")
    assert resumed.status == "active"
    assert resumed.next_due_at == datetime(2026, 3, 5, 6, 30, tzinfo=UTC)
    assert (resumed.attempts, resumed.first_failure_at, resumed.last_error) == (0, None, None)
    with pytest.raises(LifecycleError, match="cannot resume"):
        await life.resume(w.store, resumed, w.sequences, now=w.clock.now, actor="web")
    assert day_of(await deliver(w, sub.id)) == 1
    assert w.clock.now == datetime(2026, 3, 5, 6, 30, tzinfo=UTC)


async def test_restart_begins_again_from_day_one_with_new_message_ids(w: World) -> None:
    sub = await add(w, "restart@example.org")
    first = [await deliver(w, sub.id) for _ in range(2)]
    assert [day_of(m) for m in first] == [1, 2]
    before = await get(w, sub.id)
    restarted = await life.restart(w.store, before, w.sequences, now=w.clock.now, actor="cli")
    assert restarted.status == "active" and restarted.generation == before.generation + 1
    # Still at most one lesson per local day: day 1 again goes tomorrow, not right away.
    assert restarted.next_due_at == w.clock.now + timedelta(days=1)
    assert (await w.store.progress([sub.id]))[sub.id] == []

    again = [await deliver(w, sub.id) for _ in range(2)]
    assert [day_of(m) for m in again] == [1, 2]
    old_ids = {message_id_of(m) for m in first}
    new_ids = {message_id_of(m) for m in again}
    assert len(new_ids) == 2 and old_ids.isdisjoint(new_ids)

    sent, _ = await w.store.history(sub.id)
    lessons = w.order[:2]
    assert [(d["generation"], d["lesson_id"]) for d in sent] == [
        (0, lessons[0]),
        (0, lessons[1]),
        (1, lessons[0]),
        (1, lessons[1]),
    ]
    assert (await audit(w, sub.id))[-1] == ("active", "active", "cli", "restarted")
    gone = await life.unsubscribe(w.store, await get(w, sub.id), now=w.clock.now, actor="cli")
    with pytest.raises(LifecycleError, match="unsubscribed"):
        await life.restart(w.store, gone, w.sequences, now=w.clock.now, actor="cli")


async def test_a_skipped_lesson_is_never_sent_and_nothing_left_cannot_be_skipped(
    w: World,
) -> None:
    sub = await add(w, "skip@example.org")
    order = w.order
    assert await life.skip(w.store, sub, w.sequences, now=w.clock.now, actor="web") == order[0]
    assert day_of(await deliver(w, sub.id)) == 2
    for expected in order[2:]:
        current = await get(w, sub.id)
        assert await life.skip(w.store, current, w.sequences, now=w.clock.now, actor="web") == (
            expected
        )
    with pytest.raises(LifecycleError, match="no lesson left"):
        await life.skip(w.store, await get(w, sub.id), w.sequences, now=w.clock.now, actor="web")
    closing = await deliver(w, sub.id)
    assert day_of(closing) is None  # the closing email
    assert [day_of(e.data) for e in w.transport.outbox] == [2, None]
    done = await get(w, sub.id)
    assert done.status == "completed" and done.next_due_at is None
    events = await audit(w, sub.id)
    assert events[1] == ("active", "active", "web", f"skipped {order[0]}")
    assert events[-1] == ("active", "completed", "dispatch", "")


async def test_repeat_sends_the_last_lesson_again_under_a_new_message_id(w: World) -> None:
    sub = await add(w, "repeat@example.org")
    with pytest.raises(LifecycleError, match="no lesson has been sent"):
        await life.repeat(w.store, sub, w.sequences, now=w.clock.now, actor="web")
    first = await deliver(w, sub.id)
    current = await get(w, sub.id)
    assert (
        await life.repeat(w.store, current, w.sequences, now=w.clock.now, actor="web")
        == (w.order[0])
    )
    # The repeat goes at the next send time, like any lesson.
    assert (await get(w, sub.id)).next_due_at == current.next_due_at
    again = await deliver(w, sub.id)
    assert day_of(again) == 1
    # Same Message-ID as the first send would be dropped by providers as a duplicate.
    assert message_id_of(again) != message_id_of(first)
    assert day_of(await deliver(w, sub.id)) == 2
    assert ("active", "active", "web", f"repeat {w.order[0]}") in await audit(w, sub.id)


async def test_repeat_after_a_skip_is_refused_rather_than_sending_something_else(
    w: World,
) -> None:
    sub = await add(w, "skip-repeat@example.org")
    await deliver(w, sub.id)
    await life.skip(w.store, await get(w, sub.id), w.sequences, now=w.clock.now, actor="web")
    with pytest.raises(LifecycleError, match="skipped"):
        await life.repeat(w.store, await get(w, sub.id), w.sequences, now=w.clock.now, actor="web")
    assert day_of(await deliver(w, sub.id)) == 3  # the skip still holds


async def test_repeat_after_completion_resends_the_last_lesson_not_the_goodbye(w: World) -> None:
    sub = await add(w, "done@example.org")
    while (await get(w, sub.id)).status == "active":
        await deliver(w, sub.id)
    total = len(w.order)
    assert [day_of(e.data) for e in w.transport.outbox] == [*range(1, total + 1), None]
    last = w.transport.outbox[-2].data
    done = await get(w, sub.id)
    assert done.status == "completed"
    assert (
        await life.repeat(w.store, done, w.sequences, now=w.clock.now, actor="web") == (w.order[-1])
    )
    assert (await get(w, sub.id)).status == "active"
    again = await deliver(w, sub.id)
    assert day_of(again) == total and message_id_of(again) != message_id_of(last)
    # The goodbye was already sent: the next pass completes them without a second one.
    following = await get(w, sub.id)
    assert following.next_due_at is not None
    w.clock.now = following.next_due_at
    await w.parts.dispatcher.tick()
    assert len(w.transport.outbox) == total + 2
    assert (await get(w, sub.id)).status == "completed"


async def test_unsubscribe_is_idempotent(w: World) -> None:
    sub = await add(w, "leave@example.org")
    gone = await life.unsubscribe(w.store, sub, now=w.clock.now, actor="web")
    assert gone.status == "unsubscribed" and gone.next_due_at is None
    w.clock.advance(timedelta(minutes=5))
    assert await life.unsubscribe(w.store, gone, now=w.clock.now, actor="web") == gone
    # A second click on an old page (a stale, still-active copy) changes nothing either.
    await life.unsubscribe(w.store, sub, now=w.clock.now, actor="web")
    assert (await get(w, sub.id)).status == "unsubscribed"
    assert [e for e in await audit(w, sub.id) if e[1] == "unsubscribed"] == [
        ("active", "unsubscribed", "web", "")
    ]
    w.clock.now = START + timedelta(days=2)
    assert (await w.parts.dispatcher.tick()).claimed == 0
    assert w.transport.outbox == []


async def test_erase_removes_personal_data_and_history_but_keeps_the_hash(w: World) -> None:
    sub = await add(w, "Erase.Me@Example.org", name="Dana")
    await deliver(w, sub.id)
    w.clock.advance(timedelta(hours=1))
    assert await w.store.erase(sub.id, now=w.clock.now, actor="cli") is True
    erased = await get(w, sub.id)
    assert (erased.email, erased.name, erased.status) == (None, "", "erased")
    assert erased.next_due_at is None
    deliveries, events = await w.store.history(sub.id)
    assert deliveries == []
    assert [(e["old_status"], e["new_status"], e["actor"]) for e in events] == [
        ("active", "erased", "cli")
    ]
    async with w.store.engine.connect() as conn:
        kept = (await conn.execute(select(subscribers.c.email_hash))).scalars().all()
    assert kept == [email_hash("erase.me@example.org")]

    # The same address again (any spelling) finds the erased row and does not reactivate it.
    found = await w.store.find("  ERASE.ME@example.org ")
    assert found == erased
    new = NewSubscriber(
        email="erase.me@example.org", sequence_id="no-contact", timezone="UTC", send_time="08:00"
    )
    again, created = await life.add(w.store, new, now=w.clock.now, actor="web")
    assert created is False and again == erased
    for action in (life.skip, life.repeat, life.restart, life.resume):
        with pytest.raises(LifecycleError, match="erased"):
            await action(w.store, erased, w.sequences, now=w.clock.now, actor="cli")
    assert (await get(w, sub.id)) == erased
    w.clock.now = START + timedelta(days=5)
    assert (await w.parts.dispatcher.tick()).claimed == 0
    assert len(w.transport.outbox) == 1
    assert await w.store.erase(sub.id + 100, now=w.clock.now, actor="cli") is False


async def test_every_status_change_is_audited_with_actor_and_old_and_new_status(
    w: World,
) -> None:
    sub = await add(w, "audit@example.org")
    steps: list[datetime] = [w.clock.now]
    w.clock.advance(timedelta(minutes=1))
    paused = await life.pause(w.store, sub, now=w.clock.now, actor="web")
    steps.append(w.clock.now)
    w.clock.advance(timedelta(minutes=1))
    resumed = await life.resume(w.store, paused, w.sequences, now=w.clock.now, actor="cli")
    steps.append(w.clock.now)
    await deliver(w, sub.id)  # a plain send is a delivery, not a status change
    w.clock.advance(timedelta(minutes=1))
    await life.unsubscribe(w.store, await get(w, resumed.id), now=w.clock.now, actor="web")
    steps.append(w.clock.now)
    _, events = await w.store.history(sub.id)
    assert [(e["old_status"], e["new_status"], e["actor"], e["reason"]) for e in events] == [
        (None, "active", "test", "added"),
        ("active", "paused", "web", ""),
        ("paused", "active", "cli", ""),
        ("active", "unsubscribed", "web", ""),
    ]
    assert [e["at"] for e in events] == steps


async def test_reschedule_moves_the_next_send_and_keeps_one_lesson_per_day(w: World) -> None:
    sub = await add(w, "move@example.org", zone="Europe/Berlin", at="07:30")
    assert sub.next_due_at == datetime(2026, 3, 2, 6, 30, tzinfo=UTC)

    def change(s: Subscriber, **values: Any) -> Any:
        return life.reschedule(w.store, s, w.sequences, now=w.clock.now, actor="web", **values)

    moved = await change(sub, timezone="America/New_York")
    assert moved.timezone == "America/New_York"
    assert moved.next_due_at == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)  # 07:30 EST
    later = await change(moved, send_time="21:15")
    assert later.next_due_at == datetime(2026, 3, 3, 2, 15, tzinfo=UTC)  # 21:15 EST
    discreet = await change(later, discreet=True)
    assert discreet.discreet is True and discreet.next_due_at == later.next_due_at
    assert (await audit(w, sub.id))[-1] == ("active", "active", "web", "settings changed")

    # Sent this (New York) morning; moving the time later today must not send a second one.
    earlier = await change(discreet, send_time="07:00")
    assert earlier.next_due_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    await deliver(w, sub.id)
    evening = await change(await get(w, sub.id), send_time="20:00")
    assert evening.next_due_at == datetime(2026, 3, 4, 1, 0, tzinfo=UTC)  # 20:00 EST, Mar 3

    paused = await life.pause(w.store, evening, now=w.clock.now, actor="web")
    still = await change(paused, timezone="Asia/Tokyo")
    assert still.timezone == "Asia/Tokyo" and still.next_due_at is None


async def test_report_counts_statuses_due_failures_and_oldest_overdue(w: World) -> None:
    w.clock.now = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
    times = {
        "sent": "04:30",
        "retry": "04:40",
        "due1": "05:10",
        "due2": "05:20",
        "soon": "06:00",
        "later": "09:00",
        "paused": "05:10",
        "bounced": "05:10",
    }
    subs = {key: await add(w, f"{key}@example.org", at=at) for key, at in times.items()}
    await deliver(w, subs["sent"].id)
    w.transport.script.append(SendResult(Status.TRANSIENT, 451, "4.3.0 Try again later"))
    w.clock.now = datetime(2026, 3, 2, 4, 40, tzinfo=UTC)
    assert (await w.parts.dispatcher.tick()).results["retry"] == 1
    await life.pause(w.store, subs["paused"], now=w.clock.now, actor="cli")
    await w.store.record(
        [Stop(subs["bounced"].id, "bounced", "550 5.1.1 No such user")], w.clock.now
    )

    now = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)
    report = await w.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    assert report == {
        "by_status": {"active": 6, "paused": 1, "bounced": 1},
        "due_now": 3,  # due1, due2 and the retry
        "due_next_hour": 1,  # soon
        "sent_last_24h": 1,
        "failures": {"retrying": 1, "bounced": 1, "held": 0, "undeliverable": 0},
        # The retry's lesson is late since its first failure, not since its retry at 04:41.
        "oldest_overdue": datetime(2026, 3, 2, 4, 40, tzinfo=UTC),
        "failing_since": datetime(2026, 3, 2, 4, 40, tzinfo=UTC),
        "last_sent_at": datetime(2026, 3, 2, 4, 30, tzinfo=UTC),
    }
    tomorrow = now + timedelta(days=1, hours=1)
    later = await w.store.report(tomorrow, tomorrow, tomorrow - timedelta(days=1))
    assert later["sent_last_24h"] == 0
    assert later["due_now"] == 6


async def test_iterate_pages_through_every_row_without_gaps_or_repeats(w: World) -> None:
    now = w.clock.now
    statuses = ["held" if i < 14 else "paused" if i % 3 == 0 else "active" for i in range(1005)]
    rows = [
        {
            "sequence_id": "no-contact",
            "email": f"bulk{i}@example.org",
            "email_hash": email_hash(f"bulk{i}@example.org"),
            "name": "",
            "timezone": "UTC",
            "send_time": "08:00",
            "status": status,
            "discreet": False,
            "created_at": now,
            "updated_at": now,
        }
        for i, status in enumerate(statuses)
    ]
    async with w.store.engine.begin() as conn:
        await conn.execute(insert(subscribers), rows)
        ids = (await conn.execute(select(subscribers.c.id).order_by(subscribers.c.id))).scalars()
        all_ids = list(ids)
    assert len(all_ids) == 1005
    assert [s.id async for s in w.store.iterate()] == all_ids  # more than one default page
    assert [s.id async for s in w.store.iterate(batch=7)] == all_ids
    for status in ("held", "paused", "active"):  # 14 is a whole number of pages of 7
        expected = [i for i, s in zip(all_ids, statuses, strict=True) if s == status]
        assert [s.id async for s in w.store.iterate(status, batch=7)] == expected
        assert {s.status async for s in w.store.iterate(status, batch=7)} == {status}
    assert [s async for s in w.store.iterate("erased", batch=7)] == []


async def test_database_is_private_and_durable(w: World, tmp_path: Path) -> None:
    path = w.parts.config.sqlite_path
    assert path.is_relative_to(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    await add(w, "durable@example.org")
    async with w.store.engine.connect() as conn:
        journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        synchronous = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
        foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        assert (journal, synchronous, foreign_keys) == ("wal", 2, 1)  # 2 is FULL
        count = (await conn.execute(select(func.count()).select_from(subscribers))).scalar()
        assert count == 1
    # SQLite gives the write-ahead log the database file's own permissions.
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_db_upgrade_twice_is_harmless_and_ends_at_head(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    state = tmp_path / "state"
    config.write_text(
        yaml.safe_dump({"state_dir": str(state), "lessons": {"dir": str(LESSONS)}}),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRG_")}
    env |= {"DRG_LINK_SECRET": LINK_SECRET, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "--config", str(config), "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "latest schema" in done.stdout
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(alembic).get_current_head()
    assert head is not None
    with sqlite3.connect(state / "guide.sqlite3") as db:
        versions = db.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert versions == [(head,)]
    assert {"subscribers", "deliveries", "events"} <= tables


async def test_a_recipient_deferred_forever_is_retried_until_the_lifetime_has_passed(
    w: World,
) -> None:
    sub = await add(w, "greylisted@example.org", at="06:00")
    assert sub.next_due_at is not None
    w.clock.now = sub.next_due_at
    lifetime = w.parts.config.dispatch.retry_lifetime
    attempts: list[datetime] = []
    while (current := await get(w, sub.id)).status == "active":
        assert current.next_due_at is not None
        w.clock.now = max(w.clock.now, current.next_due_at)
        w.transport.script.append(SendResult(Status.TRANSIENT, 451, "4.2.1 Mailbox busy"))
        attempts.append(w.clock.now)
        await w.parts.dispatcher.tick()
        assert len(attempts) < 100, "retries never ended"
    assert current.status == "undeliverable"
    # Postfix's maximal_queue_lifetime: the last attempt happens at (or after) the lifetime,
    # not one backoff step before it.
    assert attempts[-1] - attempts[0] >= lifetime
    assert attempts[-2] - attempts[0] < lifetime
    assert w.transport.outbox == []


async def test_report_tells_how_long_sends_have_failed_and_the_oldest_late_lesson(
    w: World,
) -> None:
    first = await add(w, "first@example.org", at="05:30")
    await add(w, "second@example.org", at="06:00")
    outage = datetime(2026, 3, 2, 5, 30, tzinfo=UTC)
    w.clock.now = outage
    refused = SendResult(Status.TRANSIENT, None, "connection refused")
    w.transport.script.extend([refused] * 500)  # the relay refuses every connection
    while w.clock.now - outage < timedelta(days=1, hours=6):
        await w.parts.dispatcher.tick()
        subs = [await get(w, sid) for sid in (first.id, first.id + 1)]
        w.clock.now = max(w.clock.now, min(s.next_due_at for s in subs if s.next_due_at))
    now = w.clock.now
    report = await w.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    # Retries move next_due_at forward, but the lesson is late since it was first due.
    assert report["oldest_overdue"] == outage
    assert report["failing_since"] == outage
    assert report["last_sent_at"] is None
    stats = w.parts.dispatcher.stats
    assert stats.failing_since == outage and stats.last_delivered is None
    assert stats.last_error is not None and "connection refused" in stats.last_error

    # The relay is back: one delivery ends the failing state.
    w.transport.script.clear()
    await w.parts.dispatcher.tick()
    assert stats.failing_since is None and stats.last_delivered == w.clock.now
    assert len(w.transport.outbox) >= 1
