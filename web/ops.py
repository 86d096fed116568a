"""Operator endpoints: /healthz for probes, /metrics for Prometheus."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from guide.redact import redact
from scheduler.stats import DispatchStats
from web.context import context_of


def stale_seconds(interval_seconds: int) -> float:
    """How long since the last pass before dispatch counts as stalled (/healthz, the watchdog)."""
    return 3 * interval_seconds + 60.0


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 when the database answers, the scheduler runs, ticks are recent and sending works."""
    context = context_of(request)
    stats = context.stats
    now = context.clock()
    try:
        database = "ok" if await context.store.ping() else "error"
    except Exception as err:  # any failure here means unhealthy, with the reason shown
        database = f"error: {type(err).__name__}"  # the type only: no URL, no reply
    running = context.scheduler_running()
    age = (now - stats.last_tick).total_seconds() if stats.last_tick else None
    stale = stale_seconds(context.config.dispatch.interval_seconds)
    relay, relay_ok = _relay(stats, now, stale)
    healthy = database == "ok" and running and age is not None and age <= stale and relay_ok
    body = {
        "status": "ok" if healthy else "unhealthy",
        "database": database,
        "scheduler": "running" if running else "stopped",
        "last_tick_age_seconds": None if age is None else round(age, 1),
        # The relay's last error can quote a URL or a reply: shown only with secrets hidden.
        "relay": redact(relay),
        "failing_seconds": None
        if stats.failing_since is None
        else round((now - stats.failing_since).total_seconds(), 1),
        "lessons": "ok"
        if context.library.error is None
        else "last edit invalid; sending the previous version",
    }
    return web.json_response(body, status=200 if healthy else 503, dumps=json.dumps)


def _relay(stats: DispatchStats, now: datetime, stale: float) -> tuple[str, bool]:
    """What the relay looks like from here, and whether that is healthy."""
    if stats.halted:
        return f"halted: {stats.halted}", False
    if stats.failing_since is None:
        return "ok", True
    # A deferral now and then is normal; every send failing for longer than a few passes is
    # an outage the operator must hear about.
    failing = (now - stats.failing_since).total_seconds()
    return f"failing for {failing:.0f} s: {stats.last_error}", failing <= stale


class _DispatchCollector(Collector):
    def __init__(self, totals: dict[str, int], ticks: int, seconds: float) -> None:
        self.totals = totals
        self.ticks = ticks
        self.seconds = seconds

    def collect(self):  # type: ignore[no-untyped-def]
        sent = CounterMetricFamily(
            "drg_messages", "Messages handled by dispatch, by result", labels=["result"]
        )
        for result, count in sorted(self.totals.items()):
            sent.add_metric([result], count)
        yield sent
        ticks = CounterMetricFamily("drg_ticks", "Dispatch passes run")
        ticks.add_metric([], self.ticks)
        yield ticks
        duration = CounterMetricFamily("drg_tick_duration_seconds", "Time spent in dispatch passes")
        duration.add_metric([], self.seconds)
        yield duration


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format: messages by result, tick duration, backlog, subscribers."""
    context = context_of(request)
    stats = context.stats
    now = context.clock()
    report = await context.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    registry = CollectorRegistry()
    registry.register(_DispatchCollector(dict(stats.totals), stats.tick_count, stats.tick_seconds))
    last = Gauge("drg_last_tick_duration_seconds", "Duration of the last pass", registry=registry)
    failing = Gauge(
        "drg_sending_failing_seconds",
        "How long every send has failed transiently (0 while sends succeed)",
        registry=registry,
    )
    failing.set((now - stats.failing_since).total_seconds() if stats.failing_since else 0)
    last.set(stats.last_tick_seconds)
    backlog = Gauge("drg_due_backlog", "Active subscribers due now", registry=registry)
    backlog.set(report["due_now"])
    by_status = Gauge("drg_subscribers", "Subscribers by status", ["status"], registry=registry)
    for status, count in report["by_status"].items():
        by_status.labels(status).set(count)
    return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")
