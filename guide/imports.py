"""The store's bulk side: add many subscribers in one transaction (for `subscribers import`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from guide.records import NewSubscriber, email_hash, normalize_email
from guide.schema import events, subscribers
from guide.transactions import Writes


class ImportQueries(Writes):
    """Mixed into Store: bulk inserts, kept apart from the one-at-a-time subscriber CRUD."""

    engine: AsyncEngine
    dialect: str

    async def add_many(
        self,
        rows: Sequence[tuple[NewSubscriber, datetime | None]],
        *,
        status: str,
        now: datetime,
        actor: str,
    ) -> list[bool]:
        """Insert (subscriber, next due) pairs in one transaction; True for each row added.

        A row whose address is already in its sequence (or earlier in `rows`) is left as it
        is and gets False, exactly as `Store.add` leaves it: erased and unsubscribed people
        are never brought back by an import.
        """
        keys = [_key(new) for new, _ in rows]
        # Only the first row of an address goes to the database, so the values kept are the
        # ones a row-by-row import would have kept.
        first: dict[tuple[str, str], int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        if not first:
            return []
        values = [
            subscriber_row(*rows[index], keys[index][1], status=status, now=now)
            for index in first.values()
        ]
        async with self.writing() as conn:
            # DO NOTHING rather than failing the batch: rows already present (from an earlier
            # import, a sign-up, or another node right now) are what RETURNING leaves out.
            inserted = await conn.execute(
                _insert_ignore(self.dialect).returning(
                    subscribers.c.id, subscribers.c.sequence_id, subscribers.c.email_hash
                ),
                values,
            )
            added = {(str(seq), str(hashed)): int(sid) for sid, seq, hashed in inserted}
            if added:
                await conn.execute(
                    insert(events),
                    [
                        {
                            "subscriber_id": sid,
                            "at": now,
                            "old_status": None,
                            "new_status": status,
                            "actor": actor,
                            "reason": "added",
                        }
                        for sid in added.values()
                    ],
                )
        return [key in added and first[key] == index for index, key in enumerate(keys)]


def _key(new: NewSubscriber) -> tuple[str, str]:
    """What makes a subscriber unique: the sequence and the address's hash."""
    return new.sequence_id, email_hash(new.email)


def subscriber_row(
    new: NewSubscriber, next_due_at: datetime | None, hashed: str, *, status: str, now: datetime
) -> dict[str, Any]:
    """The subscribers row for `new`, as `Store.add` and the bulk import write it."""
    return {
        "sequence_id": new.sequence_id,
        "email": normalize_email(new.email),
        "email_hash": hashed,
        "name": new.name,
        "timezone": new.timezone,
        "send_time": new.send_time,
        "status": status,
        "discreet": new.discreet,
        "country": new.country,
        "next_due_at": next_due_at,
        "created_at": now,
        "confirmed_at": now if status == "active" else None,
        "updated_at": now,
    }


def _insert_ignore(dialect: str) -> Any:
    """INSERT INTO subscribers that skips a row whose address is already in its sequence."""
    # Only the address constraint: any other conflict is a fault to report, not "present".
    unique = ["sequence_id", "email_hash"]
    if dialect == "postgresql":
        return postgresql.insert(subscribers).on_conflict_do_nothing(index_elements=unique)
    return sqlite.insert(subscribers).on_conflict_do_nothing(index_elements=unique)
