"""The files of `subscribers import` and `subscribers export`: CSV rows in, CSV or JSON out."""

from __future__ import annotations

import csv
import errno
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from guide.config import FooterConfig
from guide.crisis import CrisisFooters
from guide.records import NewSubscriber, Subscriber
from guide.store import Store
from guide.text import (
    ValidationError,
    check_email,
    check_flag,
    check_name,
    check_send_time,
    check_timezone,
)
from scheduler import subscribers as life

CSV_COLUMNS = ("email", "name", "timezone", "send_time", "discreet", "sequence", "country")
REQUIRED_COLUMNS = ("email", "timezone", "send_time")
EXPORT_COLUMNS = (
    "id",
    "email",
    "name",
    "timezone",
    "send_time",
    "discreet",
    "country",
    "sequence_id",
    "status",
    "created_at",
    "confirmed_at",
    "last_sent_at",
    "next_due_at",
)


@dataclass(frozen=True)
class Row:
    """One good row of an import file, with its line number."""

    line: int
    subscriber: NewSubscriber


def read_rows(
    path: Path,
    default_sequence: str,
    sequences: dict[str, Any],
    footers: CrisisFooters | None = None,
) -> tuple[list[Row], list[str]]:
    """The good rows of `path`, and a `file:line: field: message` for each bad one.

    `footers` checks the optional country column (without: the shipped countries).
    """
    footers = footers or FooterConfig().crisis_footers()
    rows: list[Row] = []
    errors: list[str] = []
    if path.exists() and not path.is_file() and not path.is_dir():
        # A FIFO or a device would block the import forever, or never end.
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
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
                new = _new_subscriber(record, default_sequence, sequences, footers)
                rows.append(Row(line, new))
            except ValidationError as err:
                errors.append(f"{path}:{line}: {err.field}: {err.message}")
    return rows, errors


def _new_subscriber(
    record: dict[str | Any, str | Any],
    default_sequence: str,
    sequences: dict[str, Any],
    footers: CrisisFooters,
) -> NewSubscriber:
    # DictReader files surplus cells under the key None.
    if None in record:
        raise ValidationError("row", "has more cells than the header")
    sequence = (record.get("sequence") or "").strip() or default_sequence
    if sequence not in sequences:
        raise ValidationError("sequence", f"{sequence!r} is not a known sequence")
    return NewSubscriber(
        email=check_email(record.get("email") or ""),
        sequence_id=sequence,
        timezone=check_timezone(record.get("timezone") or ""),
        send_time=check_send_time(record.get("send_time") or ""),
        name=check_name(record.get("name") or ""),
        discreet=check_flag(record.get("discreet") or ""),
        country=footers.check(record.get("country") or ""),
    )


def cell(value: Any) -> str:
    """A value as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = "" if value is None else str(value)
    # Spreadsheet formula injection: a leading =, +, - or @ would run as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def write_export(
    store: Store, subs: Sequence[Subscriber], out: TextIO, *, fmt: str, single: bool
) -> None:
    """JSON (everything kept about each person) or CSV (one row per subscriber) to `out`."""
    if fmt == "json":
        data = [await life.export_data(store, sub) for sub in subs]
        json.dump(data[0] if single else data, out, indent=2, default=str)
        out.write("\n")
        return
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for sub in subs:
        writer.writerow([cell(getattr(sub, col)) for col in EXPORT_COLUMNS])
