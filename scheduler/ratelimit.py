"""A shared send-rate limit: per second and per hour, as relays and providers impose them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
