"""What dispatch has done in this process: the counters /metrics and /healthz read."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Histogram

from guide.clock import Clock
from guide.errors import TransportConfigError

log = logging.getLogger(__name__)

# Pass durations: an idle pass takes milliseconds, a big backlog under a rate limit hours.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400)


@dataclass
class DispatchStats:
    """Totals since start, the last pass, and whether sending is halted or failing."""

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
    # Who is sending (the lease owner's name) and to what (host:port), for /metrics and logs.
    node: str = ""
    relay: str = "the relay"
    # dispatch.relay_alert_seconds: how long every send may fail before it is an outage.
    alert_seconds: float = 300.0
    # Whether the outage was announced at ERROR, so that it is said once and its end once.
    alerted: bool = False
    # Passes that ended in an error (the database down, say), and the end of the last good one.
    failed_passes: int = 0
    last_success: datetime | None = None
    durations: Histogram = field(init=False)
    # The time now, for judging an outage in the middle of a long pass (whose sends are all
    # stamped with its start); None: judged by the stamps alone.
    clock: Clock | None = None

    def __post_init__(self) -> None:
        # Not in the global registry: each dispatcher (and each test's) keeps its own figures.
        self.durations = Histogram(
            "drg_pass_duration_seconds",
            "Duration of dispatch passes",
            labelnames=["node"],
            buckets=PASS_BUCKETS,
            registry=None,
        )
        self.durations.labels(self.node)  # zeros until the first pass, not no series at all

    def finished_pass(self, at: datetime, seconds: float) -> None:
        """Count one pass that started at `at` and took `seconds`."""
        self.last_tick = at
        self.last_tick_seconds = seconds
        self.tick_count += 1
        self.tick_seconds += seconds
        self.durations.labels(self.node).observe(seconds)

    def succeeded(self, ended: datetime) -> None:
        """The pass that just ended did all it set out to do (it may have sent nothing)."""
        self.last_success = ended

    def delivered(self, at: datetime) -> None:
        """A message was accepted: sending works."""
        if self.alerted and self.failing_since is not None:
            down = (at - self.failing_since).total_seconds()
            log.info("relay %s accepts mail again, after %.0f s of failures", self.relay, down)
        self.alerted = False
        self.last_delivered = at
        self.failing_since = None
        self.answered += 1

    def failed(self, at: datetime, error: str) -> None:
        """A send failed transiently (deferred, refused, dropped, timed out)."""
        if self.failing_since is None:
            self.failing_since = at
        self.last_error = error
        self.answered += 1
        self.check_relay(self.clock() if self.clock is not None else at)

    def failing_seconds(self, now: datetime) -> float | None:
        """How long every send has failed at `now`, or None while sending works."""
        if self.failing_since is None:
            return None
        return max((now - self.failing_since).total_seconds(), 0.0)

    def relay_down(self, now: datetime) -> bool:
        """Whether every send has failed for dispatch.relay_alert_seconds or longer."""
        failing = self.failing_seconds(now)
        return failing is not None and failing >= self.alert_seconds

    def check_relay(self, now: datetime) -> None:
        """Say at ERROR, once per outage, that the relay has been failing too long."""
        if self.alerted or not self.relay_down(now):
            return
        self.alerted = True
        log.error(
            "relay %s: every send has failed for %.0f s: %s "
            "(check the relay, smtp.host and smtp.port; /healthz answers 503 until it accepts one)",
            self.relay,
            self.failing_seconds(now) or 0.0,
            self.last_error,
        )
