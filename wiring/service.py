"""Run the service: the web pages and the scheduler in one loop until a signal."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from datetime import UTC, datetime, timedelta

from aiohttp import web
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from guide import eventloop
from guide.config import Config
from web.admin.app import start_admin
from web.app import create_app
from web.context import WebContext
from wiring.notify import Notifier
from wiring.parts import Parts, build, web_context
from wiring.reload import Reloader
from wiring.stacks import task_stacks
from wiring.watchdog import PassWatch, run_watchdog, status_line

log = logging.getLogger(__name__)
# How long a cancelled pass may take to wind down before the parts are closed anyway.
_CANCEL_SECONDS = 5.0


async def serve(
    config: Config, *, stop: asyncio.Event | None = None, notifier: Notifier | None = None
) -> int:
    """Run the web pages and the scheduler in one loop until SIGTERM or SIGINT; SIGHUP reloads.

    Under systemd (Type=notify) it says READY=1 once the store, the lessons and the web port
    are up, pings the watchdog while passes are healthy, and reports reloads and the stop.
    """
    notifier = notifier or Notifier.from_env(os.environ)
    parts = await build(config)
    scheduler = AsyncIOScheduler(timezone=UTC)
    runner = None
    context = None
    if config.web.enabled or config.admin.configured:
        context = web_context(parts, scheduler_running=lambda: bool(scheduler.running))
    if config.web.enabled and context is not None:
        # Listen first: if the port is taken, exit before any pass has started.
        runner = await _start_web(config, context)
        if runner is None:
            await parts.close()
            return 1
    admin = await start_admin(config, context)  # its own address; off without an admin
    if admin.failed:
        if runner is not None:
            await runner.cleanup()
        await parts.close()
        return 1
    _add_jobs(scheduler, config, parts, notifier)
    # What is built by now lives as long as the process. Frozen, it is left out of the
    # collector's full passes, which would otherwise walk it all (about 120,000 objects, tens
    # of milliseconds) in the middle of whatever page or send happens to trigger one.
    gc.freeze()
    eventloop.short_gil_turns()  # pages and the pass share the loop: see guide/eventloop.py
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP (systemctl reload) re-reads config.yaml, lessons and templates; without a handler
    # it would end the process with status 129, which Restart=on-failure does not restart.
    reloader = Reloader(parts, context, notifier, parts.clock)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    # `kill -USR1` logs where every task waits: what a stop that hangs needs to be understood
    # (a thread dump such as py-spy's shows only the idle event loop). It stays until the loop
    # closes, so it also answers while asyncio.run() cancels what is left.
    loop.add_signal_handler(signal.SIGUSR1, _log_task_stacks)
    scheduler.start()
    log.info(
        "serving: transport %s, %d lesson sequence(s), a pass every %ds",
        parts.transport.name,
        len(parts.library.current()),
        config.dispatch.interval_seconds,
    )
    notifier.ready(f"serving: a pass every {config.dispatch.interval_seconds} s")
    watchdog = loop.create_task(
        run_watchdog(notifier, PassWatch(parts.dispatcher, parts.clock()), parts.clock)
    )
    try:
        await stop.wait()
    finally:
        await reloader.close()  # one under way ends first; one asked for from now on is ignored
        notifier.stopping()
        await admin.close()
        await _stop(config, parts, scheduler, runner)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        # Not SIG_DFL: a `systemctl reload` in the last moments must not end it with 129.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # Pinged until here: a stop is bounded by the grace and systemd's TimeoutStopSec.
        watchdog.cancel()
        notifier.close()
    log.info("stopped")
    return 0


def _add_jobs(
    scheduler: AsyncIOScheduler, config: Config, parts: Parts, notifier: Notifier
) -> None:
    """The dispatch pass every dispatch.interval_seconds, and the hourly purge of sign-ups."""
    overlap = PassOverlap(config.dispatch.interval_seconds)

    async def tick() -> None:
        try:
            report = await parts.dispatcher.tick()
        except Exception as err:
            # The service stays up: a failed pass is logged (one line) and the next one tries.
            parts.dispatcher.pass_failed(err)
            return
        finally:
            overlap.clear()
        if parts.dispatcher.stats.last_tick is not None and not parts.dispatcher.stopping.is_set():
            notifier.status(status_line(report, parts.dispatcher, parts.dispatcher.stats.last_tick))

    async def purge() -> None:
        # Unconfirmed sign-ups carry no consent: delete them after web.pending_days.
        cutoff = parts.clock() - timedelta(days=config.web.pending_days)
        removed = await parts.store.purge_pending(cutoff)
        if removed:
            log.info("deleted %d sign-ups that were never confirmed", removed)

    scheduler.add_job(
        tick,
        "interval",
        seconds=config.dispatch.interval_seconds,
        coalesce=True,
        max_instances=1,
        next_run_time=datetime.now(UTC),
        id="dispatch",
    )
    scheduler.add_job(purge, "interval", hours=1, coalesce=True, max_instances=1, id="purge")
    scheduler.add_listener(overlap.skipped, EVENT_JOB_MAX_INSTANCES)


class PassOverlap:
    """Says once per pass that it outlasts the interval (APScheduler warned every interval)."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.said = False

    def skipped(self, event: JobSubmissionEvent) -> None:
        """A run was skipped because the last one still runs: one INFO line per pass."""
        if event.job_id != "dispatch" or self.said:
            return
        self.said = True
        log.info(
            "the dispatch pass outlasts dispatch.interval_seconds (%d s); "
            "the next pass starts when it ends",
            self.interval,
        )

    def clear(self) -> None:
        """The pass ended: a later one that outlasts the interval is said again."""
        self.said = False


async def _stop(
    config: Config, parts: Parts, scheduler: AsyncIOScheduler, runner: web.AppRunner | None
) -> None:
    """No new claims; in-flight sends finish within the grace; then the parts are closed."""
    log.info("stopping: no new claims; waiting for in-flight sends")
    # Stop the dispatcher before the scheduler: APScheduler's shutdown cancels a running
    # pass, which would cut off the sends it should let finish (and a claim or a commit
    # mid-transaction). A stopping pass ends by itself, within the grace period.
    parts.dispatcher.stop()
    if runner is not None:
        await runner.cleanup()
    grace = config.dispatch.shutdown_grace_seconds + 5
    if not await _idle_within(parts, grace):
        log.warning("in-flight sends did not finish in time; their leases are released")
    scheduler.shutdown(wait=False)  # cancels a pass that is still running
    if not await _idle_within(parts, _CANCEL_SECONDS):
        log.error("the pass did not end when cancelled:\n%s", task_stacks())
    await parts.close()


async def _idle_within(parts: Parts, seconds: float) -> bool:
    """Whether the dispatcher is idle, or becomes so within `seconds`."""
    try:
        await asyncio.wait_for(parts.dispatcher.idle.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _log_task_stacks() -> None:
    log.warning("asyncio tasks (SIGUSR1):\n%s", task_stacks())


async def _start_web(config: Config, context: WebContext) -> web.AppRunner | None:
    """The running AppRunner of the subscriber pages, or None when the address is taken."""
    app = create_app(context)
    runner = web.AppRunner(app, access_log=None)  # no access log: it would record tokens
    await runner.setup()
    try:
        await web.TCPSite(runner, config.web.host, config.web.port).start()
    except OSError as err:
        await runner.cleanup()
        log.error(
            "cannot listen on %s:%d: %s (check web.host and web.port)",
            config.web.host,
            config.web.port,
            err.strerror or err,
        )
        return None
    log.info("subscriber pages on http://%s:%d/subscribe", config.web.host, config.web.port)
    return runner
