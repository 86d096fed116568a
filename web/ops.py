"""Operator endpoints: /healthz for probes, /metrics for Prometheus."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from guide.redact import redact
from scheduler.failures import database_key
from scheduler.stats import DispatchStats
from web.context import WebContext, context_of

log = logging.getLogger(__name__)
# A database that does not answer within this is down as far as a probe or a scrape goes.
DATABASE_SECONDS = 5.0


def stale_seconds(interval_seconds: int) -> float:
    """How long since the last pass before dispatch counts as stalled (/healthz, the watchdog)."""
    return 3 * interval_seconds + 60.0


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 when the database answers, the scheduler runs, ticks are recent and sending works.

    Otherwise 503, with `problems` saying in a line each what is wrong and what to check.
    """
    context = context_of(request)
    stats = context.stats
    now = context.clock()
    problems: list[str] = []
    database = await _database(context)
    if database != "ok":
        key, _ = database_key(context.config)
        problems.append(f"the database does not answer ({database}; check {key})")
    running = context.scheduler_running()
    if not running:
        problems.append("the scheduler is stopped")
    age = (now - stats.last_tick).total_seconds() if stats.last_tick else None
    stale = stale_seconds(context.config.dispatch.interval_seconds)
    if age is None or age > stale:
        problems.append("no dispatch pass yet" if age is None else f"no pass for {age:.0f} s")
    relay, relay_problem = _relay(stats, now)
    if relay_problem:
        problems.append(relay_problem)
    failing = stats.failing_seconds(now)
    body = {
        "status": "unhealthy" if problems else "ok",
        "database": database,
        "scheduler": "running" if running else "stopped",
        "last_tick_age_seconds": None if age is None else round(age, 1),
        # The relay's last error can quote a URL or a reply: shown only with secrets hidden.
        "relay": redact(relay),
        "relay_address": stats.relay,
        "failing_seconds": None if failing is None else round(failing, 1),
        "node": stats.node,
        "lessons": "ok"
        if context.library.error is None
        else "last edit invalid; sending the previous version",
        "problems": [redact(problem) for problem in problems],
    }
    return web.json_response(body, status=503 if problems else 200, dumps=json.dumps)


async def _database(context: WebContext) -> str:
    """'ok', or what went wrong: the error's type only (no URL, no reply from the server)."""
    try:
        answered = await asyncio.wait_for(context.store.ping(), DATABASE_SECONDS)
    except TimeoutError:
        return f"no answer within {DATABASE_SECONDS:.0f} s"
    except Exception as err:  # any failure here means unhealthy, with the reason shown
        log.debug("/healthz: the database did not answer", exc_info=err)
        return f"error: {type(err).__name__}"
    return "ok" if answered else "error"


def _relay(stats: DispatchStats, now: datetime) -> tuple[str, str]:
    """What the relay looks like from here, and the problem it is ('' while healthy)."""
    if stats.halted:
        return f"halted: {stats.halted}", f"relay {stats.relay}: sending halted: {stats.halted}"
    failing = stats.failing_seconds(now)
    if failing is None:
        return "ok", ""
    shown = f"failing for {failing:.0f} s: {stats.last_error}"
    # A deferral now and then is normal; every send failing for dispatch.relay_alert_seconds
    # is an outage the operator must hear about.
    if not stats.relay_down(now):
        return shown, ""
    return shown, (
        f"relay {stats.relay}: every send has failed for {failing:.0f} s "
        f"(dispatch.relay_alert_seconds: {stats.alert_seconds:.0f}): {stats.last_error}"
    )


class _DispatchCollector(Collector):
    """This process's figures, labelled with its node name: they survive a database outage."""

    def __init__(self, stats: DispatchStats, now: datetime, database_up: bool) -> None:
        self.stats = stats
        self.now = now
        self.database_up = database_up

    def collect(self) -> Iterator[Metric]:
        """Counters, gauges and the pass-duration histogram, each with the node label."""
        stats, node = self.stats, [self.stats.node]
        sent = CounterMetricFamily(
            "drg_messages", "Messages handled by dispatch, by result", labels=["node", "result"]
        )
        for result, count in sorted(stats.totals.items()):
            sent.add_metric([*node, result], count)
        yield sent
        yield _counter("drg_ticks", "Dispatch passes run", stats.tick_count, node)
        yield _counter(
            "drg_failed_passes", "Dispatch passes that ended in an error", stats.failed_passes, node
        )
        yield _counter(
            "drg_tick_duration_seconds", "Time spent in dispatch passes", stats.tick_seconds, node
        )
        yield _gauge(
            "drg_last_tick_duration_seconds",
            "Duration of the last pass",
            stats.last_tick_seconds,
            node,
        )
        success = stats.last_success.timestamp() if stats.last_success else 0.0
        yield _gauge(
            "drg_last_success_timestamp_seconds",
            "When the last pass that ended without an error ended (Unix time; 0: none yet)",
            success,
            node,
        )
        yield _gauge(
            "drg_sending_failing_seconds",
            "How long every send has failed transiently (0 while sends succeed)",
            stats.failing_seconds(self.now) or 0.0,
            node,
        )
        yield _gauge(
            "drg_relay_up",
            "0 while sending is halted or every send has failed for dispatch.relay_alert_seconds",
            0.0 if stats.halted or stats.relay_down(self.now) else 1.0,
            node,
        )
        yield _gauge(
            "drg_database_up", "Whether the database answered this scrape", self.database_up, node
        )
        yield from stats.durations.collect()


def _counter(name: str, documentation: str, value: float, node: list[str]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["node"])
    family.add_metric(node, value)
    return family


def _gauge(name: str, documentation: str, value: float, node: list[str]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["node"])
    family.add_metric(node, value)
    return family


class _DatabaseCollector(Collector):
    """The figures of the whole service, from the database: the same on every node."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        """The backlog due now and the subscribers by status."""
        backlog = GaugeMetricFamily("drg_due_backlog", "Active subscribers due now")
        backlog.add_metric([], self.report["due_now"])
        yield backlog
        by_status = GaugeMetricFamily("drg_subscribers", "Subscribers by status", labels=["status"])
        for status, count in sorted(self.report["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format: this process's figures always, the database's while it answers."""
    context = context_of(request)
    now = context.clock()
    registry = CollectorRegistry()
    database_up = True
    try:
        report = await asyncio.wait_for(
            context.store.report(now, now + timedelta(hours=1), now - timedelta(days=1)),
            DATABASE_SECONDS,
        )
    except Exception as err:  # down or slow: the scrape still gets what this process knows
        log.debug("/metrics: the database did not answer", exc_info=err)
        database_up = False
    else:
        registry.register(_DatabaseCollector(report))
    registry.register(_DispatchCollector(context.stats, now, database_up))
    return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")
