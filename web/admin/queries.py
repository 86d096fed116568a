"""Read-only figures for the admin overview and lists, beside guide/reports.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import String, func, select
from sqlalchemy.sql.elements import ColumnElement

from guide.records import Subscriber, email_hash
from guide.schema import deliveries, subscribers
from guide.store import Store

# The statuses an operator must look at: each needs a person to decide what happens next.
ATTENTION = ("held", "bounced", "undeliverable")
LIST_LIMIT = 200  # rows per status on the attention page; the count says how many there are


@dataclass(frozen=True)
class DayCount:
    """Lessons sent on one UTC day."""

    day: date
    sent: int


def _day_of(store: Store, column: Any) -> ColumnElement[str]:
    # The UTC calendar day of a timestamp, as YYYY-MM-DD text, on either database.
    if store.dialect == "sqlite":
        return func.substr(column, 1, 10, type_=String)  # stored as naive UTC text
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)


async def sent_per_day(store: Store, now: datetime, days: int = 30) -> list[DayCount]:
    """Lessons sent on each of the last `days` UTC days (today last), zero days included."""
    today = now.date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    day = _day_of(store, deliveries.c.sent_at).label("day")
    query = (
        select(day, func.count())
        .where(deliveries.c.kind == "sent", deliveries.c.sent_at >= start)
        .group_by(day)
    )
    async with store.engine.connect() as conn:
        counted = {str(d): int(n) for d, n in (await conn.execute(query)).all()}
    return [
        DayCount(d, counted.get(d.isoformat(), 0))
        for d in (first + timedelta(days=i) for i in range(days))
    ]


async def by_sequence(store: Store) -> dict[str, dict[str, int]]:
    """Subscribers of each sequence by status."""
    s = subscribers.c
    query = select(s.sequence_id, s.status, func.count()).group_by(s.sequence_id, s.status)
    found: dict[str, dict[str, int]] = {}
    async with store.engine.connect() as conn:
        for sequence_id, status, count in (await conn.execute(query)).all():
            found.setdefault(str(sequence_id), {})[str(status)] = int(count)
    return dict(sorted(found.items()))


async def needing_attention(store: Store) -> dict[str, list[Subscriber]]:
    """The most recently changed held, bounced and undeliverable subscribers, per status."""
    s = subscribers.c
    found: dict[str, list[Subscriber]] = {}
    async with store.engine.connect() as conn:
        for status in ATTENTION:
            query = (
                select(subscribers)
                .where(s.status == status)
                .order_by(s.updated_at.desc(), s.id.desc())
                .limit(LIST_LIMIT)
            )
            rows = (await conn.execute(query)).mappings().all()
            found[status] = [Subscriber.from_row(row) for row in rows]
    return found


async def with_address(store: Store, address: str) -> list[Subscriber]:
    """Every subscriber with exactly this address (one per sequence at most)."""
    query = (
        select(subscribers)
        .where(subscribers.c.email_hash == email_hash(address))
        .order_by(subscribers.c.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [Subscriber.from_row(row) for row in rows]
