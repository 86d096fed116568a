"""The files of `subscribers import` and `subscribers export`: CSV rows in, CSV or JSON out."""

from __future__ import annotations

import csv
import errno
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from guide.crisis import CrisisFooters, FooterConfig
from guide.records import NewSubscriber, Subscriber
from guide.schema import STATUSES
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

CSV_COLUMNS = (
    "email",
    "name",
    "timezone",
    "send_time",
    "discreet",
    "sequence",
    "country",
    "status",
)
REQUIRED_COLUMNS = ("email", "timezone", "send_time")
# An export file imports as it is: its sequence_id is the sequence, and what it says about the
# database it came from (ids, times) is left to the new one, which sets its own.
ALIASES = {"sequence_id": "sequence"}
EXPORT_ONLY = ("id", "created_at", "confirmed_at", "last_sent_at", "next_due_at")
# Unsubscribed, bounced and held people stay so: an import never starts mail to them again.
# Erased rows keep no address, so there is nothing of them to import.
IMPORT_STATUSES = tuple(status for status in STATUSES if status != "erased")
# A cell export defused against spreadsheet formulas (cell() below), and how to undo that.
_DEFUSED = re.compile(r"'+[=+\-@]")
_FORMULA = re.compile(r"'*[=+\-@]")
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
    status: str = "active"


def read_rows(
    path: Path,
    default_sequence: str,
    sequences: dict[str, Any],
    footers: CrisisFooters | None = None,
) -> tuple[list[Row], list[str], int]:
    """The good rows of `path`, a `file:line: field: message` for each bad one, and how many
    erased rows (an export's, with no address) were left out.

    `footers` checks the optional country column (without: the shipped countries).
    """
    footers = footers or FooterConfig().crisis_footers()
    rows: list[Row] = []
    errors: list[str] = []
    erased = 0
    if path.exists() and not path.is_file() and not path.is_dir():
        # A FIFO or a device would block the import forever, or never end.
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        header = [ALIASES.get(h, h) for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in CSV_COLUMNS and c not in EXPORT_ONLY]
        if missing or unknown:
            problem = (
                f"missing columns {', '.join(missing)}"
                if missing
                else f"unknown columns {', '.join(unknown)}"
            )
            return [], [f"{path}:1: header: {problem} (expected {', '.join(CSV_COLUMNS)})"], 0
        reader.fieldnames = header
        for record in reader:
            line = reader.line_num
            record = {key: _undefused(value) for key, value in record.items()}
            try:
                status = _status(record.get("status") or "")
                if status == "erased":
                    erased += 1
                    continue
                new = _new_subscriber(record, default_sequence, sequences, footers)
                rows.append(Row(line, new, status))
            except ValidationError as err:
                errors.append(f"{path}:{line}: {err.field}: {err.message}")
    return rows, errors, erased


def _undefused(value: Any) -> Any:
    """A cell as it was before export defused it (`'=x` back to `=x`); others unchanged."""
    return value[1:] if isinstance(value, str) and _DEFUSED.match(value) else value


def _status(value: str) -> str:
    """The status column: empty means active; "erased" is returned to be left out."""
    status = value.strip().lower() or "active"
    if status != "erased" and status not in IMPORT_STATUSES:
        raise ValidationError("status", f"{value!r} is not one of {', '.join(IMPORT_STATUSES)}")
    return status


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
    # Spreadsheet formula injection: a leading =, +, - or @ would run as a formula. Text that
    # already starts with quotes before one of them gets one more, so import can undo exactly
    # one and every value comes back as it was.
    return "'" + text if _FORMULA.match(text) else text


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
