"""The subscriber store: SQLAlchemy Core over SQLite (default) or PostgreSQL, async."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from guide.schema import deliveries, events, subscribers

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_email(address: str) -> str:
    """The form addresses are compared and stored in."""
    return address.strip().lower()


def email_hash(address: str) -> str:
    """What is kept of an erased address, to keep honouring its unsubscribe."""
    return hashlib.sha256(normalize_email(address).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Subscriber:
    """One subscriber row."""

    id: int
    sequence_id: str
    email: str | None
    name: str
    timezone: str
    send_time: str
    status: str
    discreet: bool
    generation: int
    repeats: int
    next_due_at: datetime | None
    last_sent_at: datetime | None
    attempts: int
    first_failure_at: datetime | None
    last_error: str | None
    created_at: datetime
    confirmed_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Subscriber:
        """Build from a row of `subscribers`."""
        return cls(**{name: row[name] for name in _SUBSCRIBER_FIELDS})


# Computed once: a claim builds a thousand of these per batch.
_SUBSCRIBER_FIELDS = tuple(f.name for f in fields(Subscriber))


@dataclass(frozen=True)
class NewSubscriber:
    """What is needed to add someone."""

    email: str
    sequence_id: str
    timezone: str
    send_time: str
    name: str = ""
    discreet: bool = False


@dataclass(frozen=True)
class Sent:
    """The relay answered 250: record the lesson and schedule the next one."""

    subscriber_id: int
    generation: int
    lesson_id: str
    message_id: str
    sent_at: datetime
    next_due_at: datetime | None
    completed: bool = False


@dataclass(frozen=True)
class Retry:
    """A transient failure: try again at `next_due_at`."""

    subscriber_id: int
    next_due_at: datetime
    attempts: int
    first_failure_at: datetime
    error: str


@dataclass(frozen=True)
class Stop:
    """Stop sending to this subscriber (bounced, held, undeliverable, completed)."""

    subscriber_id: int
    status: str
    error: str | None


Outcome = Sent | Retry | Stop


class Store:
    """Every database operation the service performs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, sqlite_path: Path, migrate: bool = True) -> Store:
        """Connect (creating the SQLite file 0600 if needed) and apply migrations."""
        if not url:
            _create_private(sqlite_path)
            url = f"sqlite+aiosqlite:///{sqlite_path}"
        engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            await store.upgrade()
        return store

    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head."""

        def run(connection: Connection) -> None:
            config = AlembicConfig()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def ping(self) -> bool:
        """Whether the database answers."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(1))).scalar() == 1

    # -- subscribers -------------------------------------------------------------------------

    async def add(
        self,
        new: NewSubscriber,
        *,
        status: str,
        now: datetime,
        next_due_at: datetime | None,
        actor: str,
    ) -> tuple[Subscriber, bool]:
        """Insert a subscriber; if the address is already there, return it unchanged and False."""
        address = normalize_email(new.email)
        values = {
            "sequence_id": new.sequence_id,
            "email": address,
            "email_hash": email_hash(address),
            "name": new.name,
            "timezone": new.timezone,
            "send_time": new.send_time,
            "status": status,
            "discreet": new.discreet,
            "next_due_at": next_due_at,
            "created_at": now,
            "confirmed_at": now if status == "active" else None,
            "updated_at": now,
        }
        try:
            async with self.engine.begin() as conn:
                row = (
                    (
                        await conn.execute(
                            insert(subscribers).values(values).returning(*subscribers.c)
                        )
                    )
                    .mappings()
                    .one()
                )
                await conn.execute(
                    insert(events).values(
                        subscriber_id=row["id"],
                        at=now,
                        old_status=None,
                        new_status=status,
                        actor=actor,
                        reason="added",
                    )
                )
                return Subscriber.from_row(row), True
        except IntegrityError:
            existing = await self.find(address, new.sequence_id)
            if existing is None:
                raise
            return existing, False

    async def find(self, address: str, sequence_id: str | None = None) -> Subscriber | None:
        """The subscriber with this address (in this sequence, or the first one found)."""
        query = select(subscribers).where(subscribers.c.email_hash == email_hash(address))
        if sequence_id is not None:
            query = query.where(subscribers.c.sequence_id == sequence_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query.order_by(subscribers.c.id).limit(1))).mappings().first()
        return Subscriber.from_row(row) if row else None

    async def get(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with this id."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)))
                .mappings()
                .first()
            )
        return Subscriber.from_row(row) if row else None

    async def iterate(
        self, status: str | None = None, batch: int = 1000
    ) -> AsyncIterator[Subscriber]:
        """Every subscriber in id order, fetched in pages so memory stays flat."""
        last = 0
        while True:
            query = (
                select(subscribers)
                .where(subscribers.c.id > last)
                .order_by(subscribers.c.id)
                .limit(batch)
            )
            if status is not None:
                query = query.where(subscribers.c.status == status)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                yield Subscriber.from_row(row)
            if len(rows) < batch:
                return
            last = rows[-1]["id"]

    async def change(
        self,
        subscriber_id: int,
        *,
        now: datetime,
        actor: str,
        reason: str = "",
        status: str | None = None,
        **values: Any,
    ) -> Subscriber | None:
        """Update fields (and the status, with an audit event) of one subscriber."""
        async with self.engine.begin() as conn:
            current = await _status_of(conn, subscriber_id)
            if current is None:
                return None
            if status is not None:
                values["status"] = status
            values["updated_at"] = now
            row = (
                (
                    await conn.execute(
                        update(subscribers)
                        .where(subscribers.c.id == subscriber_id)
                        .values(values)
                        .returning(*subscribers.c)
                    )
                )
                .mappings()
                .one()
            )
            if (status is not None and status != current) or reason:
                await conn.execute(
                    insert(events).values(
                        subscriber_id=subscriber_id,
                        at=now,
                        old_status=current,
                        new_status=status or current,
                        actor=actor,
                        reason=reason,
                    )
                )
        return Subscriber.from_row(row)

    async def erase(self, subscriber_id: int, *, now: datetime, actor: str) -> bool:
        """GDPR erasure: drop personal data and history, keep the hash that blocks re-sending."""
        async with self.engine.begin() as conn:
            current = await _status_of(conn, subscriber_id)
            if current is None:
                # Nothing to erase; inserting the audit event would break its foreign key.
                return False
            await conn.execute(
                delete(deliveries).where(deliveries.c.subscriber_id == subscriber_id)
            )
            await conn.execute(delete(events).where(events.c.subscriber_id == subscriber_id))
            await conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(
                    email=None,
                    name="",
                    status="erased",
                    # Timezone and send time hint at where and how someone lives: gone too.
                    timezone="UTC",
                    send_time="00:00",
                    discreet=False,
                    next_due_at=None,
                    last_sent_at=None,
                    first_failure_at=None,
                    confirmed_at=None,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                    updated_at=now,
                )
            )
            await conn.execute(
                insert(events).values(
                    subscriber_id=subscriber_id,
                    at=now,
                    old_status=current,
                    new_status="erased",
                    actor=actor,
                    reason="",
                )
            )
        return True

    # -- progress ----------------------------------------------------------------------------

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

    async def history(
        self, subscriber_id: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every delivery and audit event of one subscriber, oldest first."""
        async with self.engine.connect() as conn:
            sent = (
                await conn.execute(
                    select(deliveries)
                    .where(deliveries.c.subscriber_id == subscriber_id)
                    .order_by(deliveries.c.id)
                )
            ).mappings()
            sent_rows = [dict(row) for row in sent]
            audit = (
                await conn.execute(
                    select(events)
                    .where(events.c.subscriber_id == subscriber_id)
                    .order_by(events.c.id)
                )
            ).mappings()
            return sent_rows, [dict(row) for row in audit]

    async def skip(self, subscriber: Subscriber, lesson_id: str, now: datetime) -> None:
        """Mark a lesson as skipped so the next one is sent instead."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _insert_ignore(self.dialect).values(
                    subscriber_id=subscriber.id,
                    generation=subscriber.generation,
                    lesson_id=lesson_id,
                    kind="skipped",
                    message_id=None,
                    sent_at=now,
                )
            )

    async def unrecord_last(self, subscriber: Subscriber, keep: Iterable[str] = ()) -> str | None:
        """Forget the most recent delivery of this generation (to repeat it); its lesson id.

        Deliveries of the lesson ids in `keep` (the closing email) are never forgotten.
        """
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(deliveries.c.id, deliveries.c.lesson_id)
                    .where(
                        deliveries.c.subscriber_id == subscriber.id,
                        deliveries.c.generation == subscriber.generation,
                        deliveries.c.kind == "sent",
                        deliveries.c.lesson_id.not_in(list(keep)),
                    )
                    .order_by(deliveries.c.id.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                return None
            await conn.execute(delete(deliveries).where(deliveries.c.id == row.id))
            await conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber.id)
                .values(repeats=subscribers.c.repeats + 1)
            )
            return str(row.lesson_id)

    # -- dispatch ----------------------------------------------------------------------------

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
            .returning(*subscribers.c)
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(claim)).mappings().all()
        return sorted(
            (Subscriber.from_row(row) for row in rows), key=lambda s: (s.next_due_at, s.id)
        )

    async def record(self, outcomes: Iterable[Outcome], now: datetime) -> None:
        """Write a batch of send outcomes in one transaction (executemany per kind)."""
        sent = [o for o in outcomes if isinstance(o, Sent)]
        retries = [o for o in outcomes if isinstance(o, Retry)]
        stops = [o for o in outcomes if isinstance(o, Stop)]
        async with self.engine.begin() as conn:
            if sent:
                await conn.execute(
                    _insert_ignore(self.dialect),
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
                await conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == bindparam("b_id"))
                    .values(
                        last_sent_at=bindparam("b_sent"),
                        next_due_at=bindparam("b_next"),
                        status=bindparam("b_status"),
                        attempts=0,
                        first_failure_at=None,
                        last_error=None,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                    ),
                    [
                        {
                            "b_id": o.subscriber_id,
                            "b_sent": o.sent_at,
                            "b_next": None if o.completed else o.next_due_at,
                            "b_status": "completed" if o.completed else "active",
                        }
                        for o in sent
                    ],
                )
            if retries:
                await conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == bindparam("b_id"))
                    .values(
                        next_due_at=bindparam("b_next"),
                        attempts=bindparam("b_attempts"),
                        first_failure_at=bindparam("b_first"),
                        last_error=bindparam("b_error"),
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                    ),
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
                )
            stopped = [o for o in stops] + [
                Stop(o.subscriber_id, "completed", None) for o in sent if o.completed
            ]
            if stops:
                await conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == bindparam("b_id"))
                    .values(
                        status=bindparam("b_status"),
                        last_error=bindparam("b_error"),
                        next_due_at=None,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                    ),
                    [
                        {"b_id": o.subscriber_id, "b_status": o.status, "b_error": o.error}
                        for o in stops
                    ],
                )
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

    async def purge_pending(self, created_before: datetime) -> int:
        """Delete sign-ups never confirmed: without consent, nothing about them is kept."""
        async with self.engine.begin() as conn:
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
        async with self.engine.begin() as conn:
            result = await conn.execute(query.values(lease_owner=None, lease_until=None))
        return int(result.rowcount)

    async def report(
        self, now: datetime, hour_later: datetime, day_before: datetime
    ) -> dict[str, Any]:
        """Figures for `status` and /metrics."""
        s = subscribers.c
        async with self.engine.connect() as conn:
            counted = await conn.execute(select(s.status, func.count()).group_by(s.status))
            by_status: dict[str, int] = {str(key): int(n) for key, n in counted.all()}
            active_due = and_(s.status == "active", s.next_due_at <= now)
            due_now = (await conn.execute(select(func.count()).where(active_due))).scalar_one()
            due_hour = (
                await conn.execute(
                    select(func.count()).where(
                        s.status == "active", s.next_due_at > now, s.next_due_at <= hour_later
                    )
                )
            ).scalar_one()
            # ORDER BY … LIMIT 1 rather than MIN(): the column type then converts the value.
            oldest = (
                await conn.execute(
                    select(s.next_due_at).where(active_due).order_by(s.next_due_at).limit(1)
                )
            ).scalar()
            sent_day = (
                await conn.execute(
                    select(func.count()).where(
                        deliveries.c.kind == "sent", deliveries.c.sent_at > day_before
                    )
                )
            ).scalar_one()
            retrying = (
                await conn.execute(select(func.count()).where(s.status == "active", s.attempts > 0))
            ).scalar_one()
        return {
            "by_status": by_status,
            "due_now": int(due_now),
            "due_next_hour": int(due_hour),
            "sent_last_24h": int(sent_day),
            "failures": {
                "retrying": int(retrying),
                "bounced": int(by_status.get("bounced", 0)),
                "held": int(by_status.get("held", 0)),
                "undeliverable": int(by_status.get("undeliverable", 0)),
            },
            "oldest_overdue": oldest,
        }


async def _status_of(conn: AsyncConnection, subscriber_id: int) -> str | None:
    """The current status of one subscriber, inside the caller's transaction."""
    query = select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
    status = (await conn.execute(query)).scalars().first()
    return None if status is None else str(status)


def _insert_ignore(dialect: str) -> Any:
    # The delivery row is unique on (subscriber, generation, lesson): a second record of the
    # same lesson (a re-send after a crash) is a no-op, never an error.
    if dialect == "postgresql":
        return postgresql.insert(deliveries).on_conflict_do_nothing()
    return sqlite.insert(deliveries).on_conflict_do_nothing()


def _create_private(path: Path) -> None:
    # The database holds addresses of people at risk: only the service user may read it.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)  # also tighten a file an older version or a person created


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a delivery is recorded only once it is on disk, so a power cut cannot lose it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
