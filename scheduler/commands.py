"""Service commands: serve, tick, status, db upgrade, and the subscribers family."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from guide.clock import system_clock
from guide.config import Config
from guide.errors import GuideError, LessonError
from wiring import Parts, build, serve


def add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register serve, tick, status, db and subscribers."""
    commands.add_parser("serve", help="run the scheduler (and web pages) until stopped")
    tick = commands.add_parser("tick", help="one dispatch pass, for cron and tests")
    tick.add_argument(
        "--now", type=parse_instant, help="pretend it is this time (ISO 8601 with offset)"
    )
    tick.add_argument(
        "--dry-run", action="store_true", help="print who would get which lesson; change nothing"
    )
    commands.add_parser("status", help="subscribers by status, what is due, failures")
    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"], help="apply migrations")
    from scheduler.subscriber_commands import add_subscriber_commands

    add_subscriber_commands(commands)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (or Z)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from err
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs a UTC offset, e.g. {text}+00:00 or {text}Z"
        )
    return value.astimezone(UTC)


def run_service_command(args: argparse.Namespace, config: Config) -> int:
    """Run one of the service commands."""
    try:
        if args.command == "serve":
            return asyncio.run(serve(config))
        if args.command == "tick":
            return _with_parts(config, lambda parts: _tick(parts, args.now, args.dry_run))
        if args.command == "status":
            return _with_parts(config, _status)
        if args.command == "db":
            return _with_parts(config, _upgraded)
        from scheduler.subscriber_commands import run_subscriber_command

        return run_subscriber_command(args, config)
    except LessonError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(
            "The lessons are invalid; fix them first (python run.py lessons check).",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


def _with_parts(config: Config, action: Callable[[Parts], Awaitable[int]]) -> int:
    async def main() -> int:
        parts = await build(config)
        try:
            return await action(parts)
        finally:
            await parts.close()

    try:
        return asyncio.run(main())
    except GuideError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


async def _tick(parts: Parts, now: datetime | None, dry_run: bool) -> int:
    now = now or system_clock()
    if dry_run:
        sequences = parts.library.current()
        due = await parts.store.peek_due(now, 10_000)
        recorded = await parts.store.progress([s.id for s in due])
        from guide.progress import CLOSING_ID, choose_next

        for sub in due:
            sequence = sequences.get(sub.sequence_id)
            if sequence is None:
                print(f"{sub.id}\t{sub.email}\t(sequence {sub.sequence_id!r} missing)")
                continue
            lesson_id = choose_next([x.id for x in sequence.lessons], recorded[sub.id])
            what = f"day {sequence.day_of(lesson_id)} {lesson_id}" if lesson_id else CLOSING_ID
            print(f"{sub.id}\t{sub.email}\t{what}")
        print(f"{len(due)} due at {now.isoformat(timespec='minutes')} (dry run: nothing sent)")
        return 0
    report = await parts.dispatcher.tick(now)
    print(report)
    return 2 if report.halted else 0


async def _status(parts: Parts) -> int:
    now = system_clock()
    report = await parts.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    print("subscribers by status:")
    for status, count in sorted(report["by_status"].items()):
        print(f"  {status:<14} {count}")
    if not report["by_status"]:
        print("  (none yet)")
    print(f"due now:            {report['due_now']}")
    print(f"due in next hour:   {report['due_next_hour']}")
    print(f"sent in last 24 h:  {report['sent_last_24h']}")
    failures = ", ".join(f"{k} {v}" for k, v in report["failures"].items())
    print(f"failures:           {failures}")
    oldest = report["oldest_overdue"]
    late = f"{oldest.isoformat(timespec='minutes')} ({now - oldest} ago)" if oldest else "none"
    print(f"oldest overdue:     {late}")
    return 0


async def _upgraded(parts: Parts) -> int:
    # build() already applied every migration; say where.
    where = parts.config.database_url or parts.config.sqlite_path
    print(f"database at {where} is at the latest schema")
    return 0
