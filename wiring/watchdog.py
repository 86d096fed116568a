"""systemd's watchdog: pinged from the event loop only while dispatch passes are healthy."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from guide.clock import Clock
from scheduler.dispatch import Dispatcher, TickReport
from web.ops import stale_seconds
from wiring.notify import Notifier

log = logging.getLogger(__name__)


@dataclass
class PassWatch:
    """Whether dispatch is healthy: the last pass ended recently, or the running one moves.

    Recent means what /healthz means (web.ops.stale_seconds). A pass may rightly last hours
    (a rate limit spreads a big backlog), so a running pass is judged by its sends: one
    answered within that time, plus the spacing the rate limit imposes, is a pass that moves.
    """

    dispatcher: Dispatcher
    started: datetime
    _answered: int = field(default=-1, init=False)
    _moved_at: datetime | None = field(default=None, init=False)

    def allowance(self) -> float:
        """Seconds without a finished pass (or a send, during one) that are still healthy."""
        settings = self.dispatcher.settings
        seconds = stale_seconds(settings.interval_seconds)
        if settings.rate_per_second:
            seconds += 1 / settings.rate_per_second
        if settings.rate_per_hour:
            seconds += 3600 / settings.rate_per_hour
        return seconds

    def problem(self, now: datetime) -> str | None:
        """Why dispatch looks stuck at `now`, or None while it is healthy."""
        stats = self.dispatcher.stats
        allowed = self.allowance()
        if self.dispatcher.stopping.is_set():
            return None  # a stop is bounded by the grace period (and systemd's TimeoutStopSec)
        if self.dispatcher.idle.is_set():
            self._answered, self._moved_at = -1, None
            ended = self.started
            if stats.last_tick is not None:
                ended = max(ended, stats.last_tick + timedelta(seconds=stats.last_tick_seconds))
            idle = (now - ended).total_seconds()
            return None if idle <= allowed else f"no dispatch pass for {idle:.0f} s"
        if stats.answered != self._answered or self._moved_at is None:
            # First seen running, or a send was answered since the last look.
            self._answered, self._moved_at = stats.answered, now
        still = (now - self._moved_at).total_seconds()
        return None if still <= allowed else f"the dispatch pass has not moved for {still:.0f} s"


def status_line(report: TickReport, dispatcher: Dispatcher, at: datetime) -> str:
    """The one-line STATUS= for `systemctl status`: the last pass and what it did."""
    stats = dispatcher.stats
    line = (
        f"last pass {at:%Y-%m-%d %H:%M:%S} UTC ({stats.last_tick_seconds:.1f} s): {report}; "
        f"sent since start {stats.totals['sent']}"
    )
    if stats.halted is not None:
        line += "; sending halted (see the log)"
    elif stats.failing_since is not None:
        line += f"; sends failing since {stats.failing_since:%H:%M:%S} UTC"
    return line


async def run_watchdog(notifier: Notifier, watch: PassWatch, clock: Clock) -> None:
    """Ping every $WATCHDOG_USEC / 2 while healthy, until cancelled; a wedged loop pings never."""
    interval = notifier.watchdog
    if interval is None:
        return
    withheld = False
    while True:
        problem = watch.problem(clock())
        if problem is None:
            notifier.alive()
            if withheld:
                log.info("dispatch moves again; watchdog pings resumed")
        elif not withheld:
            # Said once: systemd restarts the service when WatchdogSec passes without a ping.
            log.error("%s: no longer pinging systemd's watchdog, which will restart us", problem)
        withheld = problem is not None
        await asyncio.sleep(interval)
