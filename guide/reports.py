"""Read-only figures about the subscribers and deliveries, for `status` and /metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from guide.schema import deliveries, subscribers


class ReportQueries:
    """The reporting half of the Store."""

    engine: AsyncEngine

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
