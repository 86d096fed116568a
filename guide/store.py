"""The subscriber store: SQLAlchemy Core over SQLite (default) or PostgreSQL, async."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from guide.database_errors import open_failure
from guide.dispatch_queries import DispatchQueries, insert_ignore
from guide.foreground import Foreground, WriteTurns
from guide.imports import ImportQueries, subscriber_row
from guide.private import private_file, private_folder
from guide.records import (
    NewSubscriber,
    Subscriber,
    email_hash,
    normalize_email,
)
from guide.reports import ReportQueries
from guide.schema import deliveries, events, subscribers

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Store(DispatchQueries, ReportQueries, ImportQueries):
    """Every database operation the service performs (dispatch ones in DispatchQueries)."""

    def __init__(self, engine: AsyncEngine, foreground: Foreground | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.write_turns = WriteTurns(foreground) if self.dialect == "sqlite" else None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        sqlite_path: Path,
        migrate: bool = True,
        foreground: Foreground | None = None,
    ) -> Store:
        """Connect (creating the SQLite file 0600 if needed) and apply migrations.

        With `foreground` (the pages' of this process), other writes on SQLite wait briefly
        while a page request is in flight (guide/foreground.py).

        A failure is one GuideError naming the config key (ConfigError when only the
        configuration can fix it), with any password in the URL hidden.
        """
        key, where = ("database.url", url) if url else ("state_dir", str(sqlite_path))
        if not url:
            _create_private(sqlite_path)
            url = f"sqlite+aiosqlite:///{sqlite_path}"
        engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine, foreground)
        try:
            if migrate:
                await store.upgrade()
            else:
                await store.ping()
        except (SQLAlchemyError, OSError) as err:
            await engine.dispose()
            raise open_failure(err, key, where) from err
        return store

    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head."""

        def run(connection: Connection) -> None:
            config = AlembicConfig()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.writing() as conn:
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
        values = subscriber_row(new, next_due_at, email_hash(address), status=status, now=now)
        try:
            async with self.writing() as conn:
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
        async with self.writing() as conn:
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
        async with self.writing() as conn:
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
                    country="",
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

    # -- history and progress by hand -------------------------------------------------------

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
        async with self.writing() as conn:
            await conn.execute(
                insert_ignore(self.dialect).values(
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
        async with self.writing() as conn:
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


async def _status_of(conn: AsyncConnection, subscriber_id: int) -> str | None:
    """The current status of one subscriber, inside the caller's transaction."""
    query = select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
    status = (await conn.execute(query)).scalars().first()
    return None if status is None else str(status)


def _create_private(path: Path) -> None:
    # The database holds addresses of people at risk: only the service user may read it.
    private_folder(path.parent, "state_dir")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    private_file(path, "state_dir")  # also tighten a file an older version or a person created


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a delivery is recorded only once it is on disk, so a power cut cannot lose it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
