"""`subscribers …`: add, list, show, the lifecycle changes, remove, export and import."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

import click

from cli.context import pass_config, with_parts
from cli.output import console, print_rows, progress
from cli.subscriber_files import CSV_COLUMNS, read_rows, write_export
from guide.clock import system_clock
from guide.config import Config
from guide.errors import GuideError
from guide.lessons import Sequence
from guide.records import NewSubscriber, Subscriber
from guide.text import check_email, check_name, check_send_time, check_timezone
from scheduler import subscribers as life
from wiring import Parts

WHO = click.argument("who")
SEQUENCE = click.option("--sequence", help="sequence id, when an address is in several")
LIST_COLUMNS = ("id", "email", "status", "timezone", "at", "sequence", "next due")


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage subscribers (WHO: an id or an email address)."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="how emails greet them (default: no name)")
@click.option("--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin (default UTC)")
@click.option("--at", default="08:00", help="local send time HH:MM (default 08:00)")
@click.option("--discreet", is_flag=True, help="neutral sender name and subjects")
@click.option("--sequence", help="sequence id (default: lessons.default_sequence)")
@click.option("--country", default="", help="code in footer.countries, or other (default: none)")
@pass_config
def add_command(
    config: Config,
    email: str,
    name: str,
    timezone: str,
    at: str,
    discreet: bool,
    sequence: str | None,
    country: str,
) -> int:
    """Add an active subscriber (they consented elsewhere)."""

    async def add(parts: Parts) -> int:
        sequence_id = sequence or config.default_sequence
        if sequence_id not in parts.library.current():
            raise GuideError(f"no sequence {sequence_id!r} in {config.lessons_dir}")
        new = NewSubscriber(
            email=check_email(email),
            sequence_id=sequence_id,
            timezone=check_timezone(timezone),
            send_time=check_send_time(at),
            name=check_name(name),
            discreet=discreet,
            country=config.footer.crisis_footers().check(country),
        )
        sub, created = await life.add(parts.store, new, now=system_clock(), actor="cli")
        if not created:
            # An erased row has no address left to print: name the one that was typed.
            click.echo(f"{new.email} is already subscribed (id {sub.id}, {sub.status})")
        else:
            click.echo(f"added {sub.email} (id {sub.id}); first lesson due {_due(sub)}")
        return 0

    return with_parts(config, add)


@subscribers_group.command("list")
@click.option("--status", help="only subscribers with this status")
@pass_config
def list_command(config: Config, status: str | None) -> int:
    """One line per subscriber."""

    async def listing(parts: Parts) -> int:
        rows = [
            (
                str(sub.id),
                sub.email or "(erased)",
                sub.status,
                sub.timezone,
                sub.send_time,
                sub.sequence_id,
                _due(sub),
            )
            async for sub in parts.store.iterate(status)
        ]
        print_rows(console(), LIST_COLUMNS, rows, right=("id",))
        return 0

    return with_parts(config, listing)


@subscribers_group.command("show")
@WHO
@SEQUENCE
@pass_config
def show_command(config: Config, who: str, sequence: str | None) -> int:
    """Everything about one subscriber, as JSON."""

    async def show(parts: Parts) -> int:
        sub = await find(parts, who, sequence)
        click.echo(json.dumps(await life.export_data(parts.store, sub), indent=2, default=str))
        return 0

    return with_parts(config, show)


# Each lifecycle change: (store, subscriber, sequences, now) → what to print first, if anything.
Change = Callable[[Parts, Subscriber, dict[str, Sequence], datetime], Awaitable[str | None]]


async def _pause(parts: Parts, sub: Subscriber, _: dict[str, Sequence], now: datetime) -> None:
    await life.pause(parts.store, sub, now=now, actor="cli")


async def _resume(parts: Parts, sub: Subscriber, seqs: dict[str, Sequence], now: datetime) -> None:
    await life.resume(parts.store, sub, seqs, now=now, actor="cli")


async def _restart(parts: Parts, sub: Subscriber, seqs: dict[str, Sequence], now: datetime) -> None:
    await life.restart(parts.store, sub, seqs, now=now, actor="cli")


async def _skip(parts: Parts, sub: Subscriber, seqs: dict[str, Sequence], now: datetime) -> str:
    return f"skipped {await life.skip(parts.store, sub, seqs, now=now, actor='cli')}"


async def _repeat(parts: Parts, sub: Subscriber, seqs: dict[str, Sequence], now: datetime) -> str:
    return f"will repeat {await life.repeat(parts.store, sub, seqs, now=now, actor='cli')}"


CHANGES: dict[str, tuple[Change, str]] = {
    "pause": (_pause, "Pause one subscriber: no lessons until resumed."),
    "resume": (_resume, "Resume a paused subscriber."),
    "restart": (_restart, "Start one subscriber's sequence again from day 1."),
    "skip": (_skip, "Skip one subscriber's next lesson."),
    "repeat": (_repeat, "Send one subscriber's last lesson again."),
}


def _change_command(action: str, change: Change, help_text: str) -> click.Command:
    @click.command(action, help=help_text)
    @WHO
    @SEQUENCE
    @pass_config
    def command(config: Config, who: str, sequence: str | None) -> int:
        async def run(parts: Parts) -> int:
            sub = await find(parts, who, sequence)
            said = await change(parts, sub, parts.library.current(), system_clock())
            if said:
                click.echo(said)
            await _print_state(parts, sub.id)
            return 0

        return with_parts(config, run)

    return command


for _action, (_change, _help) in CHANGES.items():
    subscribers_group.add_command(_change_command(_action, _change, _help))


@subscribers_group.command("remove")
@WHO
@SEQUENCE
@click.option("--erase", is_flag=True, help="erase personal data (GDPR)")
@pass_config
def remove_command(config: Config, who: str, sequence: str | None, erase: bool) -> int:
    """Unsubscribe one subscriber, or erase their personal data."""

    async def remove(parts: Parts) -> int:
        sub = await find(parts, who, sequence)
        now = system_clock()
        if erase:
            await parts.store.erase(sub.id, now=now, actor="cli")
            click.echo(
                f"erased subscriber {sub.id}: personal data removed, address kept only as a hash"
            )
            return 0
        await life.unsubscribe(parts.store, sub, now=now, actor="cli")
        await _print_state(parts, sub.id)
        return 0

    return with_parts(config, remove)


@subscribers_group.command("export")
@click.argument("who", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="json",
    help="json (default: everything held) or csv (re-imports with subscribers import)",
)
@click.option("--output", type=click.Path(path_type=Path), help="file (default: standard output)")
@SEQUENCE
@pass_config
def export_command(
    config: Config, who: str | None, fmt: str, output: Path | None, sequence: str | None
) -> int:
    """CSV or JSON of one subscriber (WHO) or everyone (GDPR access); CSV re-imports."""

    async def export(parts: Parts) -> int:
        out: TextIO = sys.stdout
        if output is not None:
            try:
                out = output.open("w", encoding="utf-8", newline="")
            except OSError as err:
                raise GuideError(f"cannot write {output}: {err.strerror}") from err
        try:
            if who:
                subs = [await find(parts, who, sequence)]
            else:
                subs = [sub async for sub in parts.store.iterate()]
            await write_export(parts.store, subs, out, fmt=fmt, single=bool(who))
        finally:
            if output is not None:
                out.close()
        return 0

    return with_parts(config, export)


@subscribers_group.command(
    "import",
    help="Add subscribers from CSV: "
    + ", ".join(CSV_COLUMNS)
    + " (a `subscribers export --format csv` file imports as it is).",
)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="import nothing if any row is bad")
@SEQUENCE
@pass_config
def import_command(config: Config, file: Path, strict: bool, sequence: str | None) -> int:
    """Add subscribers from a CSV file; rows already present are left as they are."""
    return with_parts(
        config,
        lambda parts: import_file(parts, file, sequence or config.default_sequence, strict=strict),
    )


async def import_file(parts: Parts, path: Path, default_sequence: str, *, strict: bool) -> int:
    """Report bad rows by line, add the good ones (none with `strict`); 1 if any row was bad."""
    try:
        footers = parts.config.footer.crisis_footers()
        rows, errors, erased = read_rows(path, default_sequence, parts.library.current(), footers)
    except OSError as err:
        click.echo(f"error: cannot read {path}: {err.strerror or err}", err=True)
        return 1
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        click.echo(f"error: cannot read {path}: not UTF-8 text (byte 0x{byte:02x})", err=True)
        return 1
    except csv.Error as err:
        click.echo(f"error: cannot read {path}: {err}", err=True)
        return 1
    for error in errors:
        click.echo(error, err=True)
    if errors and strict:
        click.echo(f"{len(errors)} bad row(s); --strict: nothing imported", err=True)
        return 1
    added = existing = 0
    now = system_clock()
    # Each status its own run (an export's paused or unsubscribed people stay so), in order.
    by_status: dict[str, list[NewSubscriber]] = {}
    for row in rows:
        by_status.setdefault(row.status, []).append(row.subscriber)
    with progress(len(rows), "importing") as step:
        for status, news in by_status.items():
            async for created in life.add_many(
                parts.store, news, now=now, actor="import", status=status
            ):
                added += sum(created)
                existing += len(created) - sum(created)
                for _ in created:
                    step()
    left_out = f", {erased} erased row(s) left out (no address kept)" if erased else ""
    click.echo(
        f"imported {added} new, {existing} already present, {len(errors)} bad row(s) skipped"
        + left_out
    )
    return 1 if errors else 0


async def find(parts: Parts, who: str, sequence_id: str | None) -> Subscriber:
    """The subscriber with id `who`, or with address `who` (in `sequence_id` if given)."""
    # isascii: str.isdigit() accepts '²', which int() refuses; ids fit in a signed 64-bit int.
    if who.isascii() and who.isdigit():
        sub = await parts.store.get(int(who)) if int(who) < 2**63 else None
    else:
        sub = await parts.store.find(who, sequence_id)
    if sub is None:
        raise GuideError(f"no subscriber {who!r}")
    return sub


async def _print_state(parts: Parts, subscriber_id: int) -> None:
    refreshed = await parts.store.get(subscriber_id)
    if refreshed is not None:
        click.echo(
            f"subscriber {refreshed.id}: {refreshed.status}, next lesson due {_due(refreshed)}"
        )


def _due(sub: Subscriber) -> str:
    return sub.next_due_at.isoformat(timespec="minutes") if sub.next_due_at else "-"
