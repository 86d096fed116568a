"""SQLite writers of one process take turns: a page's write is not starved by a busy pass."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from guide.records import NewSubscriber
from guide.schema import subscribers
from guide.store import Store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOT_WRITERS = 2


async def test_a_change_waits_for_at_most_the_writers_already_queued(tmp_path: Path) -> None:
    # Two writers commit back to back with a pause inside each transaction, as the recorder
    # and the claimer of a busy pass do. Before writes took turns, SQLite's busy handler let
    # them win every poll: a change from a page waited through hundreds of their commits
    # (seconds; "database is locked" once past busy_timeout).
    store = await Store.open("", sqlite_path=tmp_path / "guide.sqlite3")
    try:
        ids = []
        for i in range(2 + 20):
            new = NewSubscriber(
                email=f"r{i}@example.org",
                sequence_id="no-contact",
                timezone="UTC",
                send_time="08:00",
            )
            sub, _ = await store.add(new, status="active", now=NOW, next_due_at=NOW, actor="test")
            ids.append(sub.id)
        commits = 0
        stop = asyncio.Event()

        async def hot(row: int) -> None:
            nonlocal commits
            while not stop.is_set():
                async with store.writing() as conn:
                    query = update(subscribers).where(subscribers.c.id == row)
                    await conn.execute(query.values(attempts=commits))
                    await asyncio.sleep(0.005)
                    await conn.execute(query.values(attempts=commits + 1))
                commits += 1

        writers = [asyncio.create_task(hot(ids[n])) for n in range(HOT_WRITERS)]
        await asyncio.sleep(0.05)
        overtaken = []
        for sid in ids[HOT_WRITERS:]:
            before = commits
            changed = await store.change(sid, now=NOW, actor="test", status="paused")
            assert changed is not None and changed.status == "paused"
            overtaken.append(commits - before)
        stop.set()
        await asyncio.gather(*writers)
        assert commits > 20  # the writers really were busy throughout
        # In arrival order, each change waits for at most one transaction per busy writer.
        assert max(overtaken) <= HOT_WRITERS, overtaken
    finally:
        await store.close()
