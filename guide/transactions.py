"""Write transactions: on SQLite, one at a time per process and in the order they were asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from guide.foreground import WriteTurns


class Writes:
    """Mixed into Store and its query mixins: `writing()` is the one way to open a write."""

    engine: AsyncEngine
    dialect: str
    # None on PostgreSQL, which has row locks and lets writers of different rows run at once.
    write_turns: WriteTurns | None

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that writes, committed on leaving (rolled back on an error)."""
        if self.write_turns is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        # SQLite admits one writer at a time and makes the others poll with growing sleeps
        # (busy_timeout). A pass commits back to back, so an unsubscribe from a page could lose
        # every poll until the timeout and fail as "database is locked". Queued here, writers
        # of this process take turns in arrival order, a page's first (guide/foreground.py);
        # other processes (a CLI command) still wait through busy_timeout.
        async with self.write_turns, self.engine.begin() as conn:
            yield conn
