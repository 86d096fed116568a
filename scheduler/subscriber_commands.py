"""`python run.py subscribers …`: add, list, show, pause, resume, restart, skip, repeat, remove,
export and import."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from guide.clock import system_clock
from guide.config import Config
from guide.errors import GuideError
from guide.records import NewSubscriber, Subscriber
from guide.validate import (
    ValidationError,
    check_email,
    check_flag,
    check_name,
    check_send_time,
    check_timezone,
)
from scheduler import subscribers as life
from wiring import Parts, build

CSV_COLUMNS = ("email", "name", "timezone", "send_time", "discreet", "sequence")
EXPORT_COLUMNS = (
    "id",
    "email",
    "name",
    "timezone",
    "send_time",
    "discreet",
    "sequence_id",
    "status",
    "created_at",
    "confirmed_at",
    "last_sent_at",
    "next_due_at",
)
ACTIONS = ("pause", "resume", "restart", "skip", "repeat", "remove")


def add_subscriber_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `subscribers` and its actions."""
    parser = commands.add_parser("subscribers", help="manage subscribers")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an active subscriber (they consented elsewhere)")
    add.add_argument("email")
    add.add_argument("--name", default="")
    add.add_argument(
        "--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin (default UTC)"
    )
    add.add_argument("--at", default="08:00", help="local send time HH:MM (default 08:00)")
    add.add_argument("--discreet", action="store_true", help="neutral sender name and subjects")
    add.add_argument("--sequence", help="sequence id (default: lessons.default_sequence)")
    listing = actions.add_parser("list", help="one line per subscriber")
    listing.add_argument("--status")
    show = actions.add_parser("show", help="everything about one subscriber")
    show.add_argument("who", help="id or email address")
    for name in ACTIONS:
        action = actions.add_parser(name, help=f"{name} one subscriber")
        action.add_argument("who", help="id or email address")
        if name == "remove":
            action.add_argument("--erase", action="store_true", help="erase personal data (GDPR)")
    export = actions.add_parser("export", help="CSV or JSON of one subscriber or all (GDPR access)")
    export.add_argument("who", nargs="?", help="id or email address (default: everyone)")
    export.add_argument("--format", choices=["csv", "json"], default="json")
    export.add_argument("--output", type=Path, help="file (default: standard output)")
    imp = actions.add_parser("import", help="add subscribers from CSV: " + ", ".join(CSV_COLUMNS))
    imp.add_argument("file", type=Path)
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    for sub in (show, export, imp, *[actions.choices[a] for a in ACTIONS]):
        if not any(a.dest == "sequence" for a in sub._actions):
            sub.add_argument("--sequence", help="sequence id, when an address is in several")


def run_subscriber_command(args: argparse.Namespace, config: Config) -> int:
    """Run `subscribers ACTION`."""

    async def main() -> int:
        parts = await build(config)
        try:
            return await _dispatch(parts, args)
        finally:
            await parts.close()

    try:
        return asyncio.run(main())
    except (GuideError, ValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


async def _dispatch(parts: Parts, args: argparse.Namespace) -> int:
    now = system_clock()
    sequences = parts.library.current()
    sequence_id = getattr(args, "sequence", None) or parts.config.default_sequence
    if args.action == "add":
        if sequence_id not in sequences:
            raise GuideError(f"no sequence {sequence_id!r} in {parts.config.lessons_dir}")
        new = NewSubscriber(
            email=check_email(args.email),
            sequence_id=sequence_id,
            timezone=check_timezone(args.timezone),
            send_time=check_send_time(args.at),
            name=check_name(args.name),
            discreet=args.discreet,
        )
        sub, created = await life.add(parts.store, new, now=now, actor="cli")
        if not created:
            # An erased row has no address left to print: name the one that was typed.
            print(f"{new.email} is already subscribed (id {sub.id}, {sub.status})")
            return 0
        due = sub.next_due_at.isoformat(timespec="minutes") if sub.next_due_at else "-"
        print(f"added {sub.email} (id {sub.id}); first lesson due {due}")
        return 0
    if args.action == "list":
        return await _list(parts, args.status, sys.stdout)
    if args.action == "import":
        return await _import(parts, args.file, sequence_id, sequences, strict=args.strict, now=now)
    if args.action == "export":
        return await _export(parts, args, sys.stdout)
    sub = await _find(parts, args.who, getattr(args, "sequence", None))
    if args.action == "show":
        print(json.dumps(await life.export_data(parts.store, sub), indent=2, default=str))
        return 0
    if args.action == "pause":
        sub = await life.pause(parts.store, sub, now=now, actor="cli")
    elif args.action == "resume":
        sub = await life.resume(parts.store, sub, sequences, now=now, actor="cli")
    elif args.action == "restart":
        sub = await life.restart(parts.store, sub, sequences, now=now, actor="cli")
    elif args.action == "skip":
        print(f"skipped {await life.skip(parts.store, sub, sequences, now=now, actor='cli')}")
    elif args.action == "repeat":
        print(f"will repeat {await life.repeat(parts.store, sub, sequences, now=now, actor='cli')}")
    elif args.action == "remove":
        if args.erase:
            await parts.store.erase(sub.id, now=now, actor="cli")
            print(f"erased subscriber {sub.id}: personal data removed, address kept only as a hash")
            return 0
        sub = await life.unsubscribe(parts.store, sub, now=now, actor="cli")
    refreshed = await parts.store.get(sub.id)
    if refreshed is not None:
        due = refreshed.next_due_at.isoformat(timespec="minutes") if refreshed.next_due_at else "-"
        print(f"subscriber {refreshed.id}: {refreshed.status}, next lesson due {due}")
    return 0


async def _find(parts: Parts, who: str, sequence_id: str | None) -> Subscriber:
    # isascii: str.isdigit() accepts '²', which int() refuses; ids fit in a signed 64-bit int.
    if who.isascii() and who.isdigit():
        sub = await parts.store.get(int(who)) if int(who) < 2**63 else None
    else:
        sub = await parts.store.find(who, sequence_id)
    if sub is None:
        raise GuideError(f"no subscriber {who!r}")
    return sub


async def _list(parts: Parts, status: str | None, out: TextIO) -> int:
    print("id\temail\tstatus\ttimezone\tat\tsequence\tnext due", file=out)
    async for sub in parts.store.iterate(status):
        due = sub.next_due_at.isoformat(timespec="minutes") if sub.next_due_at else "-"
        print(
            f"{sub.id}\t{sub.email or '(erased)'}\t{sub.status}\t{sub.timezone}\t{sub.send_time}"
            f"\t{sub.sequence_id}\t{due}",
            file=out,
        )
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = "" if value is None else str(value)
    # Spreadsheet formula injection: a leading =, +, - or @ would run as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def _export(parts: Parts, args: argparse.Namespace, stdout: TextIO) -> int:
    try:
        out: TextIO = args.output.open("w", encoding="utf-8", newline="") if args.output else stdout
    except OSError as err:
        raise GuideError(f"cannot write {args.output}: {err.strerror}") from err
    try:
        if args.who:
            subs = [await _find(parts, args.who, args.sequence)]
        else:
            subs = [sub async for sub in parts.store.iterate()]
        if args.format == "json":
            data = [await life.export_data(parts.store, sub) for sub in subs]
            json.dump(data[0] if args.who else data, out, indent=2, default=str)
            out.write("\n")
        else:
            writer = csv.writer(out)
            writer.writerow(EXPORT_COLUMNS)
            for sub in subs:
                writer.writerow([_cell(getattr(sub, col)) for col in EXPORT_COLUMNS])
    finally:
        if args.output:
            out.close()
    return 0


@dataclass(frozen=True)
class _Row:
    line: int
    subscriber: NewSubscriber


def _read_rows(
    path: Path, default_sequence: str, sequences: dict[str, Any]
) -> tuple[list[_Row], list[str]]:
    rows: list[_Row] = []
    errors: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in ("email", "timezone", "send_time") if c not in header]
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if missing or unknown:
            problem = (
                f"missing columns {', '.join(missing)}"
                if missing
                else f"unknown columns {', '.join(unknown)}"
            )
            return [], [f"{path}:1: header: {problem} (expected {', '.join(CSV_COLUMNS)})"]
        reader.fieldnames = header
        for record in reader:
            line = reader.line_num
            try:
                if None in record:
                    raise ValidationError("row", "has more cells than the header")
                sequence = (record.get("sequence") or "").strip() or default_sequence
                if sequence not in sequences:
                    raise ValidationError("sequence", f"{sequence!r} is not a known sequence")
                rows.append(
                    _Row(
                        line,
                        NewSubscriber(
                            email=check_email(record.get("email") or ""),
                            sequence_id=sequence,
                            timezone=check_timezone(record.get("timezone") or ""),
                            send_time=check_send_time(record.get("send_time") or ""),
                            name=check_name(record.get("name") or ""),
                            discreet=check_flag(record.get("discreet") or ""),
                        ),
                    )
                )
            except ValidationError as err:
                errors.append(f"{path}:{line}: {err.field}: {err.message}")
    return rows, errors


async def _import(
    parts: Parts,
    path: Path,
    default_sequence: str,
    sequences: dict[str, Any],
    *,
    strict: bool,
    now: datetime,
) -> int:
    try:
        rows, errors = _read_rows(path, default_sequence, sequences)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        print(f"error: cannot read {path}: {err}", file=sys.stderr)
        return 1
    for error in errors:
        print(error, file=sys.stderr)
    if errors and strict:
        print(f"{len(errors)} bad row(s); --strict: nothing imported", file=sys.stderr)
        return 1
    progress = _Progress(len(rows), sys.stderr)
    added = existing = 0
    for row in rows:
        _, created = await life.add(parts.store, row.subscriber, now=now, actor="import")
        added += created
        existing += not created
        progress.step()
    progress.done()
    print(f"imported {added} new, {existing} already present, {len(errors)} bad row(s) skipped")
    return 1 if errors else 0


class _Progress:
    """A one-line progress bar on a terminal; a few plain lines otherwise."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.count = 0
        self.out = out
        self.tty = out.isatty()
        self.shown = -1

    def step(self) -> None:
        self.count += 1
        percent = self.count * 100 // self.total
        if percent == self.shown or (not self.tty and percent % 25):
            return
        self.shown = percent
        bar = "#" * (percent // 5) + "-" * (20 - percent // 5)
        end = "\r" if self.tty else "\n"
        self.out.write(f"[{bar}] {percent:3d}% {self.count}/{self.total}{end}")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
