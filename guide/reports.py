"""Read-only figures about the subscribers and deliveries, for `status` and /metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from guide.schema import deliveries, subscribers


class ReportQueries:
    """The reporting half of the Store."""

    engine: AsyncEngine

    async def report(
        self, now: datetime, hour_later: datetime, day_before: datetime
    ) -> dict[str, Any]:
        """Figures for `status` and /metrics."""
        s = subscribers.c
        active = s.status == "active"
        retrying = and_(active, s.attempts > 0)
        async with self.engine.connect() as conn:
            counted = await conn.execute(select(s.status, func.count()).group_by(s.status))
            by_status: dict[str, int] = {str(key): int(n) for key, n in counted.all()}
            due_now = await _count(conn, and_(active, s.next_due_at <= now))
            due_hour = await _count(conn, active, s.next_due_at > now, s.next_due_at <= hour_later)
            sent = deliveries.c.kind == "sent"
            sent_day = await _count(conn, sent, deliveries.c.sent_at > day_before)
            retrying_count = await _count(conn, retrying)
            # Retries move next_due_at forward, so a lesson that keeps failing is late since
            # its first failed attempt, not since its next retry.
            failing_since = await _first(conn, s.first_failure_at, retrying)
            waiting = await _first(
                conn, s.next_due_at, active, s.attempts == 0, s.next_due_at <= now
            )
            last_sent = await _first(conn, deliveries.c.sent_at, sent, latest=True)
        late = [t for t in (failing_since, waiting) if t is not None]
        return {
            "by_status": by_status,
            "due_now": due_now,
            "due_next_hour": due_hour,
            "sent_last_24h": sent_day,
            "failures": {
                "retrying": retrying_count,
                "bounced": int(by_status.get("bounced", 0)),
                "held": int(by_status.get("held", 0)),
                "undeliverable": int(by_status.get("undeliverable", 0)),
            },
            "oldest_overdue": min(late) if late else None,
            "failing_since": failing_since,
            "last_sent_at": last_sent,
        }


async def _count(conn: AsyncConnection, *where: ColumnElement[bool]) -> int:
    return int((await conn.execute(select(func.count()).where(*where))).scalar_one())


async def _first(
    conn: AsyncConnection, column: Column[Any], *where: ColumnElement[bool], latest: bool = False
) -> Any:
    # ORDER BY … LIMIT 1 rather than MIN(): the column type then converts the value.
    order = column.desc() if latest else column
    query = select(column).where(column.is_not(None), *where).order_by(order).limit(1)
    return (await conn.execute(query)).scalar()
