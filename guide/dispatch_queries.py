"""The store's dispatch side: claim due subscribers, record outcomes, release leases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from guide.node_queries import NodeQueries
from guide.records import Outcome, Retry, Sent, Stop, Subscriber
from guide.schema import deliveries, events, subscribers

# SQLite has one writer at a time. While the pages are in use, a pass's write transaction
# takes at most this many rows, so a page's write (an unsubscribe) waits for one short
# transaction, never for a claim of a thousand rows: under a full pass those held the writer
# for 60 ms and more (soak: POST /unsubscribe p99 under a pass 50 ms at 200 rows, 37 ms at
# 100). With nobody on the pages, whole batches go in one transaction: fewer commits.
SQLITE_WRITE_ROWS = 100


class DispatchQueries(NodeQueries):
    """Mixed into Store: the queries of the hot path, kept apart from subscriber CRUD."""

    engine: AsyncEngine
    dialect: str

    async def progress(self, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
        """Lesson ids recorded (sent or skipped) in the current generation, oldest first."""
        found: dict[int, list[str]] = {sid: [] for sid in subscriber_ids}
        if not subscriber_ids:
            return found
        query = (
            select(deliveries.c.subscriber_id, deliveries.c.lesson_id)
            .join(
                subscribers,
                and_(
                    subscribers.c.id == deliveries.c.subscriber_id,
                    subscribers.c.generation == deliveries.c.generation,
                ),
            )
            .where(deliveries.c.subscriber_id.in_(subscriber_ids))
            .order_by(deliveries.c.id)
        )
        async with self.engine.connect() as conn:
            for sid, lesson_id in await conn.execute(query):
                found[sid].append(lesson_id)
        return found

    async def peek_due(self, now: datetime, limit: int) -> list[Subscriber]:
        """Who claim_due would take, without leasing anyone (for --dry-run)."""
        query = (
            select(subscribers)
            .where(
                subscribers.c.status == "active",
                subscribers.c.next_due_at <= now,
                or_(subscribers.c.lease_until.is_(None), subscribers.c.lease_until < now),
            )
            .order_by(subscribers.c.next_due_at, subscribers.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [Subscriber.from_row(row) for row in (await conn.execute(query)).mappings()]

    async def claim_due(
        self, now: datetime, limit: int, owner: str, lease_until: datetime
    ) -> list[Subscriber]:
        """Lease up to `limit` active subscribers whose time has come, earliest first."""
        claimed: list[Subscriber] = []
        while len(claimed) < limit:
            size = min(limit - len(claimed), self._write_rows(limit))
            chunk = await self._claim(now, size, owner, lease_until)
            claimed += chunk
            if len(chunk) < size:
                break
        return sorted(claimed, key=lambda s: (s.next_due_at, s.id))

    def _write_rows(self, items: int, rows_each: int = 1) -> int:
        """How many of `items` (each writing `rows_each` rows) one pass transaction may take."""
        if self.dialect != "sqlite" or self.write_turns is None:
            return items
        foreground = self.write_turns.foreground
        # Without the pages' Foreground (a CLI command, a test) nobody can say: keep it short.
        if foreground is None or foreground.in_use():
            return min(items, max(1, SQLITE_WRITE_ROWS // rows_each))
        return items

    async def _claim(
        self, now: datetime, limit: int, owner: str, lease_until: datetime
    ) -> list[Subscriber]:
        due = (
            select(subscribers.c.id)
            .where(
                subscribers.c.status == "active",
                subscribers.c.next_due_at <= now,
                or_(subscribers.c.lease_until.is_(None), subscribers.c.lease_until < now),
            )
            .order_by(subscribers.c.next_due_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            # Several nodes: each skips rows another node is claiming right now.
            due = due.with_for_update(skip_locked=True)
        claim = (
            update(subscribers)
            .where(subscribers.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=owner, lease_until=lease_until)
        )
        if self.dialect != "sqlite":
            # Row locks, no single writer: the rows come back with the claim, one round trip.
            async with self.writing() as conn:
                rows = (await conn.execute(claim.returning(*subscribers.c))).mappings().all()
            return [Subscriber.from_row(row) for row in rows]
        async with self.writing() as conn:
            ids = list((await conn.scalars(claim.returning(subscribers.c.id))).all())
        if not ids:
            return []
        # The rows are read after the commit, by a reader: turning a few hundred rows into
        # records (dates parsed from text on SQLite) is no work to do while holding the writer.
        # One that a page stopped in between (an unsubscribe) is left out: not sent.
        read = select(subscribers).where(
            subscribers.c.id.in_(ids),
            subscribers.c.status == "active",
            subscribers.c.lease_owner == owner,
        )
        async with self.engine.connect() as conn:
            return [Subscriber.from_row(row) for row in (await conn.execute(read)).mappings()]

    async def record(self, outcomes: Iterable[Outcome], now: datetime) -> None:
        """Write a batch of send outcomes (executemany per kind); on SQLite, in short parts."""
        done = list(outcomes)
        step = max(1, self._write_rows(len(done), rows_each=2))  # a delivery and its subscriber
        for start in range(0, len(done), step):
            await self._record(done[start : start + step], now)

    async def _record(self, outcomes: list[Outcome], now: datetime) -> None:
        """One transaction."""
        sent = [o for o in outcomes if isinstance(o, Sent)]
        retries = [o for o in outcomes if isinstance(o, Retry)]
        stops = [o for o in outcomes if isinstance(o, Stop)]
        async with self.writing() as conn:
            if sent:
                await self._record_sent(conn, sent, now)
            if retries:
                await _record_retries(conn, retries, now)
            if stops:
                await _record_stops(conn, stops, now)
            stopped = stops + [
                Stop(o.subscriber_id, "completed", None) for o in sent if o.completed
            ]
            if stopped:
                await conn.execute(
                    insert(events),
                    [
                        {
                            "subscriber_id": o.subscriber_id,
                            "at": now,
                            "old_status": "active",
                            "new_status": o.status,
                            "actor": "dispatch",
                            "reason": o.error or "",
                        }
                        for o in stopped
                    ],
                )

    async def _record_sent(self, conn: AsyncConnection, sent: list[Sent], now: datetime) -> None:
        await conn.execute(
            insert_ignore(self.dialect),
            [
                {
                    "subscriber_id": o.subscriber_id,
                    "generation": o.generation,
                    "lesson_id": o.lesson_id,
                    "kind": "sent",
                    "message_id": o.message_id,
                    "sent_at": o.sent_at,
                }
                for o in sent
            ],
        )
        await _settle(
            conn,
            now,
            [
                {
                    "b_id": o.subscriber_id,
                    "b_sent": o.sent_at,
                    "b_next": None if o.completed else o.next_due_at,
                    "b_status": "completed" if o.completed else "active",
                }
                for o in sent
            ],
            last_sent_at=bindparam("b_sent"),
            next_due_at=bindparam("b_next"),
            status=bindparam("b_status"),
            attempts=0,
            first_failure_at=None,
            last_error=None,
        )

    async def purge_pending(self, created_before: datetime) -> int:
        """Delete sign-ups never confirmed: without consent, nothing about them is kept."""
        async with self.writing() as conn:
            result = await conn.execute(
                delete(subscribers).where(
                    subscribers.c.status == "pending", subscribers.c.created_at < created_before
                )
            )
        return int(result.rowcount)

    async def release(self, owner: str, subscriber_ids: Sequence[int] | None = None) -> int:
        """Give up leases held by `owner` (all, or only these subscribers)."""
        query = update(subscribers).where(subscribers.c.lease_owner == owner)
        if subscriber_ids is not None:
            if not subscriber_ids:
                return 0
            query = query.where(subscribers.c.id.in_(subscriber_ids))
        async with self.writing() as conn:
            result = await conn.execute(query.values(lease_owner=None, lease_until=None))
        return int(result.rowcount)


async def _settle(
    conn: AsyncConnection, now: datetime, rows: list[dict[str, Any]], **values: Any
) -> None:
    """Update each row's subscriber (bound as b_id) with `values` and release its lease."""
    await conn.execute(
        update(subscribers)
        .where(subscribers.c.id == bindparam("b_id"))
        .values(lease_owner=None, lease_until=None, updated_at=now, **values),
        rows,
    )


def insert_ignore(dialect: str) -> Any:
    """INSERT INTO deliveries that does nothing when the row exists."""
    # The delivery row is unique on (subscriber, generation, lesson): a second record of the
    # same lesson (a re-send after a crash) is a no-op, never an error.
    if dialect == "postgresql":
        return postgresql.insert(deliveries).on_conflict_do_nothing()
    return sqlite.insert(deliveries).on_conflict_do_nothing()


async def _record_retries(conn: AsyncConnection, retries: list[Retry], now: datetime) -> None:
    await _settle(
        conn,
        now,
        [
            {
                "b_id": o.subscriber_id,
                "b_next": o.next_due_at,
                "b_attempts": o.attempts,
                "b_first": o.first_failure_at,
                "b_error": o.error,
            }
            for o in retries
        ],
        next_due_at=bindparam("b_next"),
        attempts=bindparam("b_attempts"),
        first_failure_at=bindparam("b_first"),
        last_error=bindparam("b_error"),
    )


async def _record_stops(conn: AsyncConnection, stops: list[Stop], now: datetime) -> None:
    await _settle(
        conn,
        now,
        [{"b_id": o.subscriber_id, "b_status": o.status, "b_error": o.error} for o in stops],
        status=bindparam("b_status"),
        last_error=bindparam("b_error"),
        next_due_at=None,
    )
