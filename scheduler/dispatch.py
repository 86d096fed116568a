"""One dispatch pass: claim due subscribers → plan → send over pooled connections → record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from delivery.compose import Composer
from delivery.transports import Transport
from guide.clock import Clock
from guide.config import Config
from guide.errors import TransportConfigError
from guide.foreground import Foreground
from guide.lessons import Sequence
from guide.library import LessonLibrary
from guide.records import Subscriber
from guide.store import Store
from scheduler.failures import log_failed_pass, relay_name
from scheduler.outcomes import OutcomePolicy
from scheduler.pipeline import Pass
from scheduler.planner import Job, plan
from scheduler.ratelimit import RateLimiter
from scheduler.stats import DispatchStats

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one pass did."""

    claimed: int = 0
    results: Counter[str] = field(default_factory=Counter)
    halted: str = ""

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.results.items())) or "nothing due"
        return f"claimed {self.claimed}: {parts}" + (
            f" (halted: {self.halted})" if self.halted else ""
        )


class Dispatcher:
    """Runs dispatch passes; one instance per process."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        library: LessonLibrary,
        composer: Composer,
        transport: Transport,
        clock: Clock,
        node: str,
        limiter: RateLimiter | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self.config = config
        self.settings = config.dispatch
        self.store = store
        self.library = library
        self.composer = composer
        self.transport = transport
        self.clock = clock
        self.node = node
        self.limiter = limiter or RateLimiter(
            self.settings.rate_per_second, self.settings.rate_per_hour
        )
        self.policy = OutcomePolicy(self.settings)
        self.stats = DispatchStats(
            node=node,
            relay=relay_name(config),
            alert_seconds=self.settings.relay_alert_seconds,
            clock=clock,
        )
        # The pages of this process, whose requests go before the pass's next message.
        self.foreground = foreground or Foreground()
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def halted(self) -> TransportConfigError | None:
        """Why sending stopped (authentication, TLS), or None while it works."""
        return self.stats.halted

    def stop(self) -> None:
        """Stop claiming; in-flight sends finish (bounded by shutdown_grace_seconds)."""
        self.stopping.set()

    def plan(
        self,
        subscriber: Subscriber,
        recorded: list[str],
        sequences: dict[str, Sequence],
        now: datetime,
    ) -> Job:
        """Decide what this subscriber gets now, and how to build its message."""
        closing = self.settings.closing_email
        return plan(self.composer, subscriber, recorded, sequences, now, closing_email=closing)

    # -- the pass ------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """One pass over everyone due at `now`; returns when all claimed work is recorded."""
        report = TickReport()
        if self.stopping.is_set():
            return report
        now = now or self.clock()
        self.idle.clear()
        started = time.perf_counter()
        try:
            await Pass(self, now, report).run()
            if self.stats.halted is not None:
                report.halted = str(self.stats.halted)
        except Exception:
            self.stats.failed_passes += 1
            raise
        else:
            self.stats.succeeded(self.clock())
        finally:
            self.idle.set()
            self.stats.finished_pass(now, time.perf_counter() - started)
        # Also between sends: a relay that failed and then saw no attempt is still failing.
        self.stats.check_relay(self.clock())
        self.stats.totals.update(report.results)
        if report.claimed:
            log.info("tick at %s: %s", now.isoformat(timespec="seconds"), report)
        return report

    def pass_failed(self, err: Exception) -> None:
        """Log a pass that raised: one line naming what to check; the traceback at DEBUG."""
        log_failed_pass(err, self.config)

    def halt(self, err: TransportConfigError) -> None:
        """Stop sending for good in this process: the configuration must be fixed first."""
        if self.stats.halted is None:
            log.error("sending stopped: %s (fix the configuration and restart)", err)
        self.stats.halted = err
