"""Bulk subscribers for the benchmarks, on SQLite or PostgreSQL, through the real schema.

Rows go in through SQLAlchemy Core executemany (insertmanyvalues batches on both dialects),
so the values are exactly what the store itself would write: UTC text on SQLite,
timestamptz on PostgreSQL, the real email hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from guide.records import email_hash
from guide.schema import deliveries, events, subscribers

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kathmandu", "UTC")
CHUNK = 20_000

# A row's (status, next_due_at) from its number.
Shape = Callable[[int], tuple[str, datetime | None]]


def all_due(now: datetime) -> Shape:
    """Everyone active and due within the last hour (the throughput case)."""
    return lambda i: ("active", now - timedelta(minutes=i % 60))


def rows(
    count: int, now: datetime, shape: Shape, prefix: str = "reader"
) -> Iterator[list[dict[str, Any]]]:
    """Subscriber rows in chunks of CHUNK, shaped by `shape`, addressed `{prefix}{i}@...`."""
    for start in range(0, count, CHUNK):
        chunk = []
        for i in range(start, min(start + CHUNK, count)):
            address = f"{prefix}{i}@example.org"
            status, due = shape(i)
            chunk.append(
                {
                    "sequence_id": "no-contact",
                    "email": address,
                    "email_hash": email_hash(address),
                    "name": "Sam" if i % 3 else "",
                    "timezone": ZONES[i % len(ZONES)],
                    "send_time": "08:00",
                    "status": status,
                    "discreet": i % 5 == 0,
                    "next_due_at": due,
                    "created_at": now - timedelta(days=3),
                    "confirmed_at": now - timedelta(days=3),
                    "updated_at": now - timedelta(days=3),
                }
            )
        yield chunk


async def seed(
    engine: AsyncEngine, count: int, now: datetime, shape: Shape, prefix: str = "reader"
) -> None:
    """Insert `count` subscribers shaped by `shape`, then refresh the planner's statistics."""
    for chunk in rows(count, now, shape, prefix):
        async with engine.begin() as conn:
            await conn.execute(insert(subscribers), chunk)
    await analyze(engine)


async def analyze(engine: AsyncEngine) -> None:
    """ANALYZE, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) would in service."""
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))


async def clear(engine: AsyncEngine) -> None:
    """No subscribers, deliveries or events: the next seed starts from nothing."""
    async with engine.begin() as conn:
        for table in (deliveries, events, subscribers):
            await conn.execute(delete(table))
