"""The store's contract on every backend: claims, leases, recording, reports, two nodes."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from delivery.transports import MemoryTransport
from guide.records import NewSubscriber, Retry, Sent, Stop
from guide.schema import deliveries
from guide.store import Store
from tests.backends import database_url
from tests.harness import Clock, config_for, make_parts

__all__ = ["database_url"]

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


async def open_store(tmp_path: Path, url: str) -> Store:
    return await Store.open(url, sqlite_path=tmp_path / "state" / "guide.sqlite3")


async def add(store: Store, count: int, due: datetime) -> list[int]:
    ids = []
    for i in range(count):
        sub, created = await store.add(
            NewSubscriber(f"b{i}@example.org", "no-contact", "UTC", "09:00"),
            status="active",
            now=NOW,
            next_due_at=due,
            actor="test",
        )
        assert created
        ids.append(sub.id)
    return ids


async def test_claims_lease_and_record_outcomes(tmp_path: Path, database_url: str) -> None:
    store = await open_store(tmp_path, database_url)
    try:
        ids = await add(store, 5, NOW - timedelta(minutes=1))
        await store.upgrade()  # applying migrations twice is harmless
        claimed = await store.claim_due(NOW, 3, "node-a", NOW + timedelta(minutes=10))
        assert [s.id for s in claimed] == ids[:3]
        # Leased rows are not claimed again until the lease runs out.
        other = await store.claim_due(NOW, 10, "node-b", NOW + timedelta(minutes=10))
        assert [s.id for s in other] == ids[3:]
        assert await store.claim_due(NOW, 10, "node-c", NOW + timedelta(minutes=10)) == []
        later = NOW + timedelta(minutes=11)
        assert len(await store.claim_due(later, 10, "node-c", later + timedelta(minutes=10))) == 5

        tomorrow = NOW + timedelta(days=1)
        sent = Sent(ids[0], 0, "lesson-a", "<m1@x>", NOW, tomorrow)
        await store.record([sent, sent], NOW)  # the same delivery twice: one row
        await store.record(
            [
                Retry(ids[1], NOW + timedelta(minutes=1), 1, NOW, "451 later"),
                Stop(ids[2], "bounced", "550 5.1.1 no such user"),
                Sent(ids[3], 0, "lesson-z", "<m2@x>", NOW, None, completed=True),
            ],
            NOW,
        )
        assert (await store.progress([ids[0], ids[4]])) == {ids[0]: ["lesson-a"], ids[4]: []}
        first, retried, bounced, done = [await store.get(i) for i in ids[:4]]
        assert first and first.next_due_at == tomorrow and first.last_sent_at == NOW
        assert retried and retried.attempts == 1 and retried.status == "active"
        assert bounced and bounced.status == "bounced" and bounced.next_due_at is None
        assert done and done.status == "completed"
        async with store.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(deliveries))).scalar()
        assert count == 2
        assert await store.release("node-c") == 1  # only ids[4] still held a lease
    finally:
        await store.close()


async def test_report_and_purge(tmp_path: Path, database_url: str) -> None:
    store = await open_store(tmp_path, database_url)
    try:
        await add(store, 3, NOW - timedelta(hours=2))
        pending, _ = await store.add(
            NewSubscriber("p@example.org", "no-contact", "UTC", "09:00"),
            status="pending",
            now=NOW - timedelta(days=8),
            next_due_at=None,
            actor="test",
        )
        report = await store.report(NOW, NOW + timedelta(hours=1), NOW - timedelta(days=1))
        assert report["by_status"] == {"active": 3, "pending": 1}
        assert report["due_now"] == 3
        assert report["oldest_overdue"] == NOW - timedelta(hours=2)
        assert report["failing_since"] is None and report["last_sent_at"] is None
        assert await store.purge_pending(NOW - timedelta(days=7)) == 1
        assert await store.get(pending.id) is None
        assert len([s async for s in store.iterate(batch=2)]) == 3
    finally:
        await store.close()


async def test_two_nodes_never_send_the_same_lesson(tmp_path: Path, database_url: str) -> None:
    config = config_for(tmp_path, batch_size=25, connections=2)
    config = dataclasses.replace(config, database_url=database_url)
    clock = Clock(NOW)
    first = await make_parts(config, clock, MemoryTransport())
    second = await make_parts(config, clock, MemoryTransport())
    second.dispatcher.node = "second-node"
    try:
        await add(first.store, 150, NOW - timedelta(minutes=5))
        await asyncio.gather(first.dispatcher.tick(), second.dispatcher.tick())
        outboxes = [first.transport, second.transport]
        assert all(isinstance(t, MemoryTransport) for t in outboxes)
        recipients = [e.recipient for t in outboxes for e in t.outbox]  # type: ignore[attr-defined]
        assert len(recipients) == len(set(recipients)) == 150
        async with first.store.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(deliveries))).scalar()
        assert count == 150
    finally:
        await first.close()
        await second.close()


async def test_add_many_inserts_new_rows_once_and_leaves_present_ones(
    tmp_path: Path, database_url: str
) -> None:
    store = await open_store(tmp_path, database_url)
    try:
        [kept] = await add(store, 1, NOW - timedelta(days=3))  # b0@example.org, from before
        erased, _ = await store.add(
            NewSubscriber("gone@example.org", "no-contact", "UTC", "09:00"),
            status="active",
            now=NOW,
            next_due_at=NOW,
            actor="test",
        )
        assert await store.erase(erased.id, now=NOW, actor="test")
        due = NOW + timedelta(hours=5)
        later = NOW + timedelta(days=1)
        rows = [
            (NewSubscriber("New@Example.org", "no-contact", "Asia/Tokyo", "07:15", "Ann"), due),
            (NewSubscriber("b0@example.org", "no-contact", "Asia/Tokyo", "07:15"), due),
            (NewSubscriber("gone@example.org", "no-contact", "UTC", "08:00"), due),
            # The same address twice in one batch: the first row is the one kept.
            (NewSubscriber("new@example.org", "no-contact", "UTC", "10:00", "Bo"), later),
            # The same address in another sequence is another subscriber.
            (NewSubscriber("b0@example.org", "other", "UTC", "06:00", discreet=True), later),
        ]
        flags = await store.add_many(rows, status="active", now=NOW, actor="import")
        assert flags == [True, False, False, False, True]
        assert await store.add_many([], status="active", now=NOW, actor="import") == []
        # Idempotent: the same rows again add nothing.
        again = await store.add_many(rows, status="active", now=NOW, actor="import")
        assert again == [False] * len(rows)

        new = await store.find("new@example.org")
        assert new is not None
        assert (new.email, new.name, new.timezone, new.send_time, new.next_due_at) == (
            "new@example.org",
            "Ann",
            "Asia/Tokyo",
            "07:15",
            due,
        )
        assert (new.status, new.confirmed_at, new.created_at) == ("active", NOW, NOW)
        other = await store.find("b0@example.org", "other")
        assert other is not None and other.discreet and other.next_due_at == later
        before = await store.get(kept)
        assert before and before.timezone == "UTC" and before.next_due_at == NOW - timedelta(days=3)
        gone = await store.get(erased.id)
        assert gone and gone.status == "erased" and gone.email is None

        # One audit event per subscriber added, as `add` writes it; none for the others.
        for sub in (new, other):
            _, audit = await store.history(sub.id)
            assert [
                (e["old_status"], e["new_status"], e["actor"], e["reason"], e["at"]) for e in audit
            ] == [(None, "active", "import", "added", NOW)]
        assert [e["reason"] for e in (await store.history(kept))[1]] == ["added"]
        assert [e["new_status"] for e in (await store.history(erased.id))[1]] == ["erased"]
        assert len([s async for s in store.iterate()]) == 4
    finally:
        await store.close()
