"""Send-rate limits, per second and per hour, as relays and providers impose them.

RateLimiter keeps its budget in the process (SQLite: one node); SharedRateLimiter keeps it in
the database, so on PostgreSQL the configured rate is the relay's rate however many nodes run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class _Bucket:
    """A token bucket: `rate` tokens per `period` seconds, holding at most `burst`."""

    def __init__(self, rate: float, period: float, burst: float, now: float) -> None:
        self.per_second = rate / period
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def wait_time(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.per_second

    def take(self) -> None:
        self.tokens -= 1


class RateLimiter:
    """Every worker calls acquire() before a send; 0 disables a limit."""

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.monotonic = monotonic
        self.sleep = sleep
        now = monotonic()
        self.buckets = []
        if per_second > 0:
            # A burst of one second's worth keeps the rate smooth without starving workers.
            self.buckets.append(_Bucket(per_second, 1.0, max(1.0, per_second), now))
        if per_hour > 0:
            # Spread the hourly budget evenly rather than spending it in the first minute.
            self.buckets.append(_Bucket(per_hour, 3600.0, max(1.0, per_hour / 60), now))
        self.lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return bool(self.buckets)

    async def acquire(self) -> None:
        """Wait until a send is allowed by every limit, then spend one token of each."""
        if not self.buckets:
            return
        async with self.lock:  # FIFO among workers
            while True:
                now = self.monotonic()
                wait = max(bucket.wait_time(now) for bucket in self.buckets)
                if wait <= 0:
                    for bucket in self.buckets:
                        bucket.take()
                    return
                await self.sleep(wait)


class TokenSource(Protocol):
    """A bucket every node takes from (the store's rate_buckets, on PostgreSQL)."""

    async def take_tokens(
        self, name: str, want: int, rate: float, burst: float
    ) -> tuple[int, float]:
        """Take up to `want` tokens; returns (taken, available before taking)."""
        ...


@dataclass
class _Shared:
    """One shared limit as this node sees it: the bucket's terms and tokens taken ahead."""

    name: str
    per_second: float
    burst: float
    spare: int = 0

    @property
    def want(self) -> int:
        # A twentieth of a second's worth per round trip: few queries per second whatever the
        # rate, and few tokens idle in one node while another waits.
        return max(1, min(100, int(self.per_second / 20)))


class SharedRateLimiter(RateLimiter):
    """The send-rate limit of the whole relay, kept in the database all nodes share."""

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        source: TokenSource,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # A RateLimiter with no local bucket: wherever one is expected, this one fits.
        super().__init__(0, 0, sleep=sleep)
        self.source = source
        self.limits: list[_Shared] = []
        # The same terms as RateLimiter's, so a node on its own behaves as before.
        if per_second > 0:
            self.limits.append(_Shared("per_second", per_second, max(1.0, per_second)))
        if per_hour > 0:
            self.limits.append(_Shared("per_hour", per_hour / 3600, max(1.0, per_hour / 60)))
        self.failing = False

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return bool(self.limits)

    async def acquire(self) -> None:
        """Wait until every shared limit grants this node a token, then spend it."""
        if not self.limits:
            return
        async with self.lock:  # FIFO among this node's workers
            for limit in self.limits:
                while limit.spare < 1:
                    await self._refill(limit)
            for limit in self.limits:
                limit.spare -= 1

    async def _refill(self, limit: _Shared) -> None:
        try:
            taken, available = await self.source.take_tokens(
                limit.name, limit.want, limit.per_second, limit.burst
            )
        except Exception as err:
            # Nothing may be sent past the shared limit: wait for the database, say so once.
            if not self.failing:
                log.warning("the shared send-rate limit cannot be read (%s); waiting", err)
            self.failing = True
            await self.sleep(1.0)
            return
        self.failing = False
        limit.spare += taken
        if not taken:
            await self.sleep(max((1 - available) / limit.per_second, 0.001))
