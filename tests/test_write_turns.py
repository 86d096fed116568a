"""SQLite writers of one process take turns, a page's first, and a pass's are short."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, update

from guide.dispatch_queries import SQLITE_WRITE_ROWS
from guide.foreground import Foreground
from guide.records import NewSubscriber, Outcome, Retry
from guide.schema import subscribers
from guide.store import Store
from tests.harness import seed_due

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOT_WRITERS = 2


async def add_active(store: Store, prefix: str, count: int) -> list[int]:
    """`count` active subscribers, all due at NOW; their ids."""
    ids = []
    for i in range(count):
        new = NewSubscriber(
            email=f"{prefix}{i}@example.org",
            sequence_id="no-contact",
            timezone="UTC",
            send_time="08:00",
        )
        sub, _ = await store.add(new, status="active", now=NOW, next_due_at=NOW, actor="test")
        ids.append(sub.id)
    return ids


class HotWriters:
    """Writers committing back to back with a pause inside each transaction, as the recorder
    and the claimer of a busy pass do; `commits` counts what they committed."""

    def __init__(self, store: Store, rows: list[int]) -> None:
        self.store = store
        self.rows = rows
        self.commits = 0
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> HotWriters:
        self.tasks = [asyncio.create_task(self._hot(row)) for row in self.rows]
        await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def _hot(self, row: int) -> None:
        while not self.stop.is_set():
            async with self.store.writing() as conn:
                query = update(subscribers).where(subscribers.c.id == row)
                await conn.execute(query.values(attempts=self.commits))
                await asyncio.sleep(0.005)
                await conn.execute(query.values(attempts=self.commits + 1))
            self.commits += 1

    async def overtaken(self, sids: list[int], *, page: Foreground | None = None) -> list[int]:
        """Pause each of `sids` (in a page request with `page`): commits made meanwhile."""
        counts = []
        for sid in sids:
            before = self.commits
            with page.request() if page else contextlib.nullcontext():
                changed = await self.store.change(sid, now=NOW, actor="test", status="paused")
            assert changed is not None and changed.status == "paused"
            counts.append(self.commits - before)
        return counts


async def test_a_change_waits_for_at_most_the_writers_already_queued(tmp_path: Path) -> None:
    # Before writes took turns, SQLite's busy handler let two busy writers win every poll: a
    # change from a page waited through hundreds of their commits (seconds; "database is
    # locked" once past busy_timeout).
    store = await Store.open("", sqlite_path=tmp_path / "guide.sqlite3")
    try:
        ids = await add_active(store, "r", HOT_WRITERS + 20)
        async with HotWriters(store, ids[:HOT_WRITERS]) as writers:
            overtaken = await writers.overtaken(ids[HOT_WRITERS:])
        assert writers.commits > 20  # the writers really were busy throughout
        # In arrival order, each change waits for at most one transaction per busy writer.
        assert max(overtaken) <= HOT_WRITERS, overtaken
    finally:
        await store.close()


async def test_a_page_change_goes_before_every_queued_pass_write(tmp_path: Path) -> None:
    # Four busy writers keep the queue full. A change made while a page request is served
    # (guide/foreground.py) waits only for the transaction in progress, not for the queue.
    store = await Store.open("", sqlite_path=tmp_path / "guide.sqlite3")
    try:
        ids = await add_active(store, "p", 4 + 10)
        async with HotWriters(store, ids[:4]) as writers:
            plain = await writers.overtaken(ids[4:9])
            page = await writers.overtaken(ids[9:], page=Foreground())
        assert min(plain) >= 2, plain  # in arrival order: behind the queued writers
        assert max(page) <= 1, page  # a page: only the transaction in progress
    finally:
        await store.close()


async def test_a_claim_holds_the_writer_for_a_few_hundred_rows_at_a_time(tmp_path: Path) -> None:
    store = await Store.open("", sqlite_path=tmp_path / "guide.sqlite3")
    try:
        await seed_due("", tmp_path / "guide.sqlite3", SQLITE_WRITE_ROWS * 2 + 50, NOW, "c")
        commits: list[int] = []
        event.listen(store.engine.sync_engine, "commit", lambda conn: commits.append(1))
        claimed = await store.claim_due(NOW, 10_000, "node-a", NOW + timedelta(minutes=1))
        outcomes: list[Outcome] = [
            Retry(s.id, NOW + timedelta(hours=1), 1, NOW, "451 later") for s in claimed
        ]
        claim_commits = len(commits)
        await store.record(outcomes, NOW)
    finally:
        await store.close()
    assert len(claimed) == SQLITE_WRITE_ROWS * 2 + 50
    keys = [(s.next_due_at, s.id) for s in claimed]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # earliest first, none twice
    assert claim_commits == 3  # SQLITE_WRITE_ROWS twice, then the last 50
    # Half as many outcomes a transaction (two rows each): 2 * 2 + 1 (the last 50).
    assert len(commits) - claim_commits == 5


async def test_with_nobody_on_the_pages_a_claim_is_one_transaction(tmp_path: Path) -> None:
    foreground = Foreground()
    path = tmp_path / "guide.sqlite3"
    store = await Store.open("", sqlite_path=path, foreground=foreground)
    try:
        await seed_due("", path, SQLITE_WRITE_ROWS * 4, NOW, "q")
        commits: list[int] = []
        event.listen(store.engine.sync_engine, "commit", lambda conn: commits.append(1))
        lease = NOW + timedelta(minutes=1)
        quiet = await store.claim_due(NOW, SQLITE_WRITE_ROWS * 2, "node-a", lease)
        assert (len(quiet), len(commits)) == (SQLITE_WRITE_ROWS * 2, 1)
        later = NOW + timedelta(hours=1)
        await store.record([Retry(s.id, later, 1, NOW, "451 later") for s in quiet], NOW)
        assert len(commits) == 2  # the whole batch of outcomes, one transaction too
        with foreground.request():
            pass  # a page was just served: the pages are in use
        commits.clear()
        busy = await store.claim_due(NOW, SQLITE_WRITE_ROWS * 2, "node-a", lease)
        assert (len(busy), len(commits)) == (SQLITE_WRITE_ROWS * 2, 2)
        assert not {s.id for s in quiet} & {s.id for s in busy}
    finally:
        await store.close()
