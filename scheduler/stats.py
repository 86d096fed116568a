"""What dispatch has done in this process: the counters /metrics and /healthz read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from guide.errors import TransportConfigError


@dataclass
class DispatchStats:
    """Totals since start, the last pass, and whether sending is halted."""

    totals: Counter[str] = field(default_factory=Counter)
    tick_count: int = 0
    tick_seconds: float = 0.0
    last_tick: datetime | None = None
    last_tick_seconds: float = 0.0
    halted: TransportConfigError | None = None
    # Since when every send has failed transiently (None once one is delivered): a relay
    # that refuses connections shows here, where per-subscriber retries cannot.
    failing_since: datetime | None = None
    last_delivered: datetime | None = None
    last_error: str | None = None
    # Sends answered (delivered or failed) since start: a long pass that still moves shows here
    # before it ends and updates last_tick (the watchdog tells a slow pass from a stuck one).
    answered: int = 0

    def finished_pass(self, at: datetime, seconds: float) -> None:
        """Count one pass that started at `at` and took `seconds`."""
        self.last_tick = at
        self.last_tick_seconds = seconds
        self.tick_count += 1
        self.tick_seconds += seconds

    def delivered(self, at: datetime) -> None:
        """A message was accepted: sending works."""
        self.last_delivered = at
        self.failing_since = None
        self.answered += 1

    def failed(self, at: datetime, error: str) -> None:
        """A send failed transiently (deferred, refused, dropped, timed out)."""
        if self.failing_since is None:
            self.failing_since = at
        self.last_error = error
        self.answered += 1
