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

    def finished_pass(self, at: datetime, seconds: float) -> None:
        """Count one pass that started at `at` and took `seconds`."""
        self.last_tick = at
        self.last_tick_seconds = seconds
        self.tick_count += 1
        self.tick_seconds += seconds
