"""What nodes write about themselves: lease renewal, heartbeats, the shared send-rate budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from guide.schema import nodes, subscribers
from guide.transactions import Writes

FORGET = timedelta(days=7)


@dataclass(frozen=True)
class Beat:
    """One node's heartbeat: who, since when, and how its last pass went."""

    name: str
    started_at: datetime
    seen_at: datetime
    last_pass_at: datetime | None = None
    last_pass_seconds: float | None = None
    last_pass_result: str | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    stopped_at: datetime | None = None


@dataclass(frozen=True)
class Holder:
    """The leases one owner holds: how many, and when the first of them runs out."""

    owner: str
    count: int
    first_expiry: datetime


# Taking tokens from a shared bucket in one statement: refill by the time since the last
# take (the database's clock, the one clock every node shares), cap at the burst, grant up
# to `want` whole tokens. FOR UPDATE makes concurrent nodes take turns on the row.
_TAKE = text(
    """
    WITH at AS (SELECT clock_timestamp() AS t),
    cur AS (
        SELECT b.name, at.t,
               LEAST(CAST(:burst AS double precision),
                     b.tokens + CAST(:rate AS double precision)
                     * GREATEST(0, CAST(EXTRACT(EPOCH FROM at.t - b.stamp) AS double precision)))
               AS avail
        FROM rate_buckets b, at WHERE b.name = :name FOR UPDATE OF b
    ),
    granted AS (SELECT name, t, avail, LEAST(FLOOR(avail), :want) AS n FROM cur)
    UPDATE rate_buckets SET tokens = granted.avail - granted.n, stamp = granted.t
    FROM granted WHERE rate_buckets.name = granted.name
    RETURNING granted.n, granted.avail
    """
)
_START = text(
    "INSERT INTO rate_buckets (name, tokens, stamp) VALUES (:name, :burst, clock_timestamp())"
    " ON CONFLICT (name) DO NOTHING"
)


class NodeQueries(Writes):
    """Mixed into the Store through DispatchQueries: the node-wide bookkeeping."""

    engine: AsyncEngine
    dialect: str

    async def renew(self, owner: str, since: datetime, until: datetime, seen: datetime) -> int:
        """Extend to `until` the leases `owner` took at or after `since`; mark it seen."""
        # `since` is the lease the pass first gave: leases left by an earlier pass (a message
        # that could not be prepared) are older and run out as they should.
        async with self.writing() as conn:
            result = await conn.execute(
                update(subscribers)
                .where(subscribers.c.lease_owner == owner, subscribers.c.lease_until >= since)
                .values(lease_until=until)
            )
            # An upsert: a node whose first pass is still running has no row yet.
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            row = {"name": owner, "started_at": seen, "seen_at": seen}
            await conn.execute(
                dialect.insert(nodes)
                .values(row)
                .on_conflict_do_update(index_elements=["name"], set_={"seen_at": seen})
            )
        return int(result.rowcount)

    async def beat(self, beat: Beat) -> None:
        """Insert or update this node's row."""
        values: dict[str, Any] = {
            "name": beat.name,
            "started_at": beat.started_at,
            "seen_at": beat.seen_at,
            "stopped_at": beat.stopped_at,
            "last_pass_at": beat.last_pass_at,
            "last_pass_seconds": beat.last_pass_seconds,
            "last_pass_result": beat.last_pass_result,
            "failing_since": beat.failing_since,
            "last_error": beat.last_error,
        }
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        insert = dialect.insert(nodes).values(values)
        changed = {k: v for k, v in values.items() if k not in ("name", "started_at")}
        query = insert.on_conflict_do_update(index_elements=["name"], set_=changed)
        async with self.writing() as conn:
            await conn.execute(query)
            # Every process is a node (each tick too): forget those gone for a week.
            await conn.execute(delete(nodes).where(nodes.c.seen_at < beat.seen_at - FORGET))

    async def node_stopped(self, name: str, at: datetime) -> None:
        """Mark a node as stopped on purpose (a dead one is only not seen any more)."""
        async with self.writing() as conn:
            await conn.execute(update(nodes).where(nodes.c.name == name).values(stopped_at=at))

    async def nodes(self) -> list[Beat]:
        """Every node's last heartbeat, the most recently seen first."""
        query = select(nodes).order_by(nodes.c.seen_at.desc(), nodes.c.name)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Beat(**dict(row)) for row in rows]

    async def holders(self) -> list[Holder]:
        """Leases held, by owner, the soonest to run out first."""
        s = subscribers.c
        query = (
            select(s.lease_owner, func.count(), func.min(s.lease_until))
            .where(and_(s.lease_owner.is_not(None), s.lease_until.is_not(None)))
            .group_by(s.lease_owner)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [Holder(str(o), int(n), first) for o, n, first in rows]
        return sorted(found, key=lambda h: (h.first_expiry, h.owner))

    async def take_tokens(
        self, name: str, want: int, rate: float, burst: float
    ) -> tuple[int, float]:
        """Take up to `want` tokens from the shared bucket `name` (PostgreSQL only).

        Returns (taken, available before taking); the bucket fills at `rate` a second up to
        `burst`, and starts full.
        """
        params = {"name": name, "want": want, "rate": rate, "burst": burst}
        async with self.writing() as conn:
            row = (await conn.execute(_TAKE, params)).first()
            if row is None:
                await conn.execute(_START, params)
                row = (await conn.execute(_TAKE, params)).first()
        assert row is not None
        return int(row[0]), float(row[1])
