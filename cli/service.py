"""`serve`, `tick` and `status`: run the service, one pass of it, or look at its state."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from cli.context import pass_config, with_parts
from cli.output import live_count
from guide.clock import system_clock
from guide.config import Config
from guide.node_queries import Beat
from guide.progress import next_step
from wiring import Parts, serve

F = TypeVar("F", bound=Callable[..., Any])
# Enough for any real backlog; a dry run is read-only, so there is no lease to keep short.
DRY_RUN_LIMIT = 10_000
# A simulated time must leave room for the date math after it (retry lifetimes, next send
# times, link expiry); year 9999 would overflow it. Both ends are far from any real clock.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# tick's exit statuses (README.md, "Exit statuses"); 1 and 2 come from the command line itself.
TICK_OK = 0  # the pass ran; every claimed subscriber has an outcome
TICK_HALTED = 3  # the relay halted sending (authentication, TLS): fix smtp.* first
TICK_INCOMPLETE = 4  # some claimed subscribers got no outcome; the log says why


def parse_instant(ctx: click.Context, param: click.Parameter, text: str | None) -> datetime | None:
    """An ISO 8601 time with a UTC offset (or Z), as UTC; a usage error (exit 2) otherwise."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time") from err
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs a UTC offset, e.g. {text}+00:00 or {text}Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        value = datetime.min.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise click.BadParameter(
            f"{text!r} is outside {EARLIEST:%Y-%m-%d} to {LATEST - timedelta(days=1):%Y-%m-%d}"
        )
    return value


@click.command("serve")
@pass_config
def serve_command(config: Config) -> int:
    """Run the scheduler (and web pages) until stopped.

    SIGTERM or SIGINT: no new claims, in-flight sends finish within
    dispatch.shutdown_grace_seconds, exit status 0. SIGHUP (systemctl reload): config.yaml,
    the lessons and the templates are read again; rates, footer, sender names and log level
    apply at once, other keys need a restart, and a bad edit keeps what runs. Under systemd
    (Type=notify) it reports readiness, status and stop, and pings the watchdog.
    """
    return asyncio.run(serve(config))


def now_option(help: str) -> Callable[[F], F]:
    """The `--now TIME` option of tick and status (simulated time, ISO 8601 with offset)."""
    return click.option("--now", metavar="TIME", callback=parse_instant, help=help)


@click.command("tick")
@now_option("pretend it is this time (ISO 8601 with offset)")
@click.option("--dry-run", is_flag=True, help="print who would get which lesson; change nothing")
@pass_config
def tick_command(config: Config, now: datetime | None, dry_run: bool) -> int:
    """One dispatch pass, for cron and tests (a progress bar on a terminal).

    Exit status 0: the pass ran; 1: it could not run (lessons, database); 2: a usage or
    configuration error; 3: the relay halted sending (authentication, TLS): fix smtp.* first;
    4: some due subscribers got no outcome (the log says why; they are tried again).
    """
    return with_parts(config, lambda parts: (dry_tick if dry_run else tick)(parts, now))


@click.command("status")
@now_option("report as of this time (ISO 8601 with offset), e.g. after `tick --now`")
@pass_config
def status_command(config: Config, now: datetime | None) -> int:
    """Subscribers by status, what is due, failures, and how late the oldest lesson is.

    Then the last pass (when, how long, on which node, its result), the nodes running now and
    any that ended without stopping, the leases held (by node, and when the first runs out),
    and whether the relay is refusing every send. Exit status 0; 1 if the database cannot be
    read.
    """
    return with_parts(config, lambda parts: status(parts, now))


async def tick(parts: Parts, now: datetime | None) -> int:
    """One real pass; prints its report (after a progress bar, on a terminal)."""
    now = now or system_clock()
    stdout = sys.stdout
    total = 0
    if stdout.isatty():
        figures = await parts.store.report(now, now, now)
        total = int(figures["due_now"])
    with live_count(total, "sending", stdout) as show:
        watcher = asyncio.create_task(_follow(parts, show))
        try:
            report = await parts.dispatcher.tick(now)
        finally:
            watcher.cancel()
        show(sum(report.results.values()))
    click.echo(str(report))
    if report.halted:
        return TICK_HALTED
    missing = report.claimed - sum(report.results.values())
    if missing > 0:
        # The pass logged why (a message that could not be prepared or sent); cron must see it.
        click.echo(f"{missing} claimed subscriber(s) got no outcome; see the log", err=True)
        return TICK_INCOMPLETE
    return TICK_OK


async def _follow(parts: Parts, show: Callable[[int], None]) -> None:
    """Move the bar as the relay answers, five times a second."""
    stats = parts.dispatcher.stats
    before = stats.answered
    while True:
        show(stats.answered - before)
        await asyncio.sleep(0.2)


async def dry_tick(parts: Parts, now: datetime | None) -> int:
    """Who is due and what each would get, by the same rule the dispatcher uses."""
    now = now or system_clock()
    sequences = parts.library.current()
    due = await parts.store.peek_due(now, DRY_RUN_LIMIT)
    recorded = await parts.store.progress([s.id for s in due])
    closing_email = parts.config.dispatch.closing_email
    for sub in due:
        sequence = sequences.get(sub.sequence_id)
        if sequence is None:
            click.echo(f"{sub.id}\t{sub.email}\t(sequence {sub.sequence_id!r} missing)")
            continue
        step = next_step(sequence, recorded[sub.id], closing_email=closing_email)
        if not step.send:
            what = "(completes; nothing to send)"
        elif step.closing:
            what = step.lesson_id
        else:
            what = f"day {sequence.day_of(step.lesson_id)} {step.lesson_id}"
        click.echo(f"{sub.id}\t{sub.email}\t{what}")
    click.echo(f"{len(due)} due at {now.isoformat(timespec='minutes')} (dry run: nothing sent)")
    return 0


async def status(parts: Parts, now: datetime | None = None) -> int:
    """Print the store's report: key-value lines that scripts and monitoring can grep."""
    now = now or system_clock()
    report = await parts.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    click.echo("subscribers by status:")
    for name, count in sorted(report["by_status"].items()):
        click.echo(f"  {name:<14} {count}")
    if not report["by_status"]:
        click.echo("  (none yet)")
    click.echo(f"due now:            {report['due_now']}")
    click.echo(f"due in next hour:   {report['due_next_hour']}")
    click.echo(f"sent in last 24 h:  {report['sent_last_24h']}")
    failures = ", ".join(f"{k} {v}" for k, v in report["failures"].items())
    click.echo(f"failures:           {failures}")
    click.echo(f"failing since:      {_ago(report['failing_since'], now)}")
    click.echo(f"last delivery:      {_ago(report['last_sent_at'], now)}")
    click.echo(f"oldest overdue:     {_ago(report['oldest_overdue'], now)}")
    await show_nodes(parts, now)
    return 0


async def show_nodes(parts: Parts, now: datetime) -> None:
    """The last pass, the nodes seen lately, the leases they hold, and the relay."""
    beats = await parts.store.nodes()
    holders = await parts.store.holders()
    stale = node_stale_after(parts.config)
    passes = [b for b in beats if b.last_pass_at is not None]
    if passes:
        last = max(passes, key=lambda b: b.last_pass_at or now)
        took = f"{last.last_pass_seconds or 0:.1f} s"
        click.echo(
            f"last pass:          {_ago(last.last_pass_at, now)}, {took} on {last.name}: "
            f"{last.last_pass_result}"
        )
    else:
        click.echo("last pass:          none recorded")
    live = [b for b in beats if is_live(b, now, stale)]
    click.echo(f"live nodes:         {len(live)}")
    for beat in live:
        click.echo(f"  {beat.name:<30} seen {_span(now - beat.seen_at)} ago")
    # Gone without marking itself stopped (killed, or its host lost) within the last day.
    lost = [
        b for b in beats if b.stopped_at is None and stale < now - b.seen_at < timedelta(days=1)
    ]
    if lost:
        click.echo(f"silent nodes:       {len(lost)} (ended without stopping: killed?)")
    for beat in lost:
        click.echo(f"  {beat.name:<30} last seen {_span(now - beat.seen_at)} ago")
    held = sum(h.count for h in holders)
    if holders:
        first = min(h.first_expiry for h in holders)
        click.echo(f"leases held:        {held}, the first runs out {_until(first, now)}")
    else:
        click.echo("leases held:        0")
    for holder in holders:
        click.echo(
            f"  {holder.owner:<30} {holder.count}, the first runs out "
            f"{_until(holder.first_expiry, now)}"
        )
    click.echo(f"relay:              {relay_line(live, now)}")


def node_stale_after(config: Config) -> timedelta:
    """How long a live node may go without a heartbeat: two of its longest silences."""
    # A node writes at the end of every pass and, during a long pass, at every lease renewal.
    silence = max(config.dispatch.interval_seconds, config.dispatch.lease_seconds / 3)
    return timedelta(seconds=2 * silence + 10)


def is_live(beat: Beat, now: datetime, stale: timedelta) -> bool:
    """Whether a node is running: not stopped, and seen recently."""
    return beat.stopped_at is None and now - beat.seen_at <= stale


def relay_line(live: list[Beat], now: datetime) -> str:
    """Whether the live nodes' sends are failing, since when and why."""
    failing = [b for b in live if b.failing_since is not None]
    if not failing:
        return "ok (no live node reports failing sends)" if live else "unknown (no live node)"
    worst = min(failing, key=lambda b: b.failing_since or now)
    assert worst.failing_since is not None
    return (
        f"every send failing since {_ago(worst.failing_since, now)} on {worst.name}: "
        f"{worst.last_error or 'no reply'} (check smtp.host, smtp.port and the relay)"
    )


def _span(delta: timedelta) -> str:
    """A duration in whole seconds: '0:00:03', '1 day, 2:00:00'."""
    return str(timedelta(seconds=round(delta.total_seconds())))


def _until(instant: datetime, now: datetime) -> str:
    """'in 0:00:40', or '0:05:00 ago (a dead node's: free for the next pass)'."""
    if instant >= now:
        return f"in {_span(instant - now)}"
    return f"{_span(now - instant)} ago (expired: the next pass takes them over)"


def _ago(instant: datetime | None, now: datetime) -> str:
    """'2027-03-02T05:30+00:00 (1 day, 6:00:00 ago)', or 'none'."""
    if instant is None:
        return "none"
    return f"{instant.isoformat(timespec='minutes')} ({now - instant} ago)"
