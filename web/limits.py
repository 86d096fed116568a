"""Sliding-window counters for sign-up rate limits, per client and per address."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """Allows `limit` events per `period` seconds for each key; memory is pruned as it goes."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.period = period
        self.clock = clock
        self.events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False when the key is over its limit."""
        now = self.clock()
        window = self.events.setdefault(key, deque())
        while window and window[0] <= now - self.period:
            window.popleft()
        if len(window) >= self.limit:
            return False
        window.append(now)
        if len(self.events) > 50_000:  # a flood of distinct keys must not grow memory forever
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        stale = [key for key, w in self.events.items() if not w or w[-1] <= now - self.period]
        for key in stale:
            del self.events[key]
