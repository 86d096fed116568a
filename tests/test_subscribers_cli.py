"""Acceptance: `python run.py subscribers …`, `tick`, `status` and `db` in a child process."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from guide.lessons import Sequence, load_library
from guide.records import Retry, Stop, email_hash
from guide.store import Store
from scheduler.subscribers import IMPORT_BATCH
from tests.harness import LINK_SECRET

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = ROOT / "run.py"
LESSONS = ROOT / "lessons"
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Result:
    """What one run printed and how it exited."""

    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


class CLI:
    """run.py against a config whose state directory lives in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.state = tmp_path / "state"
        self.config = tmp_path / "config.yaml"
        data = {"state_dir": str(self.state), "lessons": {"dir": str(LESSONS)}}
        self.config.write_text(yaml.safe_dump(data), encoding="utf-8")
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DRG_") and key != "CREDENTIALS_DIRECTORY"
        }
        self.env |= {"DRG_LINK_SECRET": LINK_SECRET, "PYTHONDONTWRITEBYTECODE": "1"}

    def __call__(self, *args: str) -> Result:
        done = subprocess.run(
            [sys.executable, str(RUN_PY), "--config", str(self.config), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in result.both, result.both
        return result

    @property
    def database(self) -> Path:
        return self.state / "guide.sqlite3"

    def outbox(self) -> set[Path]:
        new = self.state / "outbox" / "new"
        return set(new.glob("*.eml")) if new.exists() else set()

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as db:
            return db.execute(query).fetchall()


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    return load_library(LESSONS)["no-contact"]


def lesson_text(path: Path) -> str:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    text = body.get_content()
    assert isinstance(text, str)
    return text


def on_day(days_ahead: int, at: time, zone: ZoneInfo = BERLIN) -> datetime:
    """`at` local time, `days_ahead` days after today in `zone`."""
    day = datetime.now(zone).date() + timedelta(days=days_ahead)
    return datetime.combine(day, at, zone)


# -- add -------------------------------------------------------------------------------------


def test_add_prints_the_id_and_due_time_and_a_second_add_changes_nothing(cli: CLI) -> None:
    before = datetime.now(UTC)
    added = cli("subscribers", "add", "New.Person@Example.org", "--timezone", "Europe/Berlin")
    assert added.code == 0, added.both
    match = re.fullmatch(
        r"added new\.person@example\.org \(id (\d+)\); first lesson due (\S+)\n", added.out
    )
    assert match, added.out
    due = datetime.fromisoformat(match.group(2))
    assert before < due <= datetime.now(UTC) + timedelta(days=1)
    assert due.astimezone(BERLIN).time() == time(8, 0)  # the default send time, local

    again = cli("subscribers", "add", " new.person@example.org ", "--timezone", "Asia/Tokyo")
    assert again.code == 0
    assert (
        again.out == f"new.person@example.org is already subscribed (id {match.group(1)}, active)\n"
    )
    assert cli.rows("SELECT id, timezone, status FROM subscribers") == [
        (int(match.group(1)), "Europe/Berlin", "active")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-address"], "error: email: 'not-an-address' is not an email address"),
        (["a@example.org", "--timezone", "Mars/Olympus"], "error: timezone: 'Mars/Olympus' is"),
        (["a@example.org", "--at", "25:00"], "error: send_time: '25:00' is not a 24-hour time"),
        (["a@example.org", "--name", "Ann\nBcc: x@evil.test"], "error: name: must be one line"),
    ],
    ids=["address", "timezone", "time", "name"],
)
def test_add_refuses_bad_input_with_a_clear_error(cli: CLI, args: list[str], message: str) -> None:
    result = cli("subscribers", "add", *args)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(message), result.err
    assert len(result.err.splitlines()) == 1
    assert cli.rows("SELECT count(*) FROM subscribers") == [(0,)]


# -- the lifecycle commands ------------------------------------------------------------------


def test_lifecycle_commands_from_add_to_erase(cli: CLI, sequence: Sequence) -> None:
    order = [lesson.id for lesson in sequence.lessons]
    address = "life@example.org"
    assert cli("subscribers", "add", address, "--name", "Sam").code == 0
    due = re.compile(r"subscriber 1: active, next lesson due (\S+)\n")

    assert cli("subscribers", "pause", address).out == "subscriber 1: paused, next lesson due -\n"
    before = datetime.now(UTC)
    resumed = cli("subscribers", "resume", "1")
    assert (match := due.fullmatch(resumed.out)), resumed.out
    assert datetime.fromisoformat(match.group(1)) > before
    assert cli("subscribers", "skip", "1").out.startswith(f"skipped {order[0]}\n")

    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    ticked = cli("tick", "--now", later)
    assert ticked.out == "claimed 1: sent 1\n", ticked.both
    [sent] = cli.outbox()
    assert f"Day 2 of {len(sequence)}" in lesson_text(sent)  # day 1 was skipped
    assert cli("subscribers", "repeat", "1").out.startswith(f"will repeat {order[1]}\n")
    restarted = cli("subscribers", "restart", "1")
    assert due.fullmatch(restarted.out), restarted.out

    shown = json.loads(cli("subscribers", "show", "1").out)
    assert shown["subscriber"]["email"] == address and shown["subscriber"]["name"] == "Sam"
    assert (shown["subscriber"]["generation"], shown["subscriber"]["repeats"]) == (1, 0)
    assert [
        (e["old_status"], e["new_status"], e["actor"], e["reason"]) for e in shown["events"]
    ] == [
        (None, "active", "cli", "added"),
        ("active", "paused", "cli", ""),
        ("paused", "active", "cli", ""),
        ("active", "active", "cli", f"skipped {order[0]}"),
        ("active", "active", "cli", f"repeat {order[1]}"),
        ("active", "active", "cli", "restarted"),
    ]
    # The repeat took the sent lesson off the record so that it goes again.
    assert [(d["generation"], d["lesson_id"], d["kind"]) for d in shown["deliveries"]] == [
        (0, order[0], "skipped")
    ]

    removed = cli("subscribers", "remove", address)
    assert removed.out == "subscriber 1: unsubscribed, next lesson due -\n"
    erased = cli("subscribers", "remove", "1", "--erase")
    assert erased.code == 0 and erased.out.startswith("erased subscriber 1")

    after = json.loads(cli("subscribers", "show", address).out)  # found by the kept hash
    assert after["subscriber"]["email"] is None and after["subscriber"]["name"] == ""
    assert after["subscriber"]["status"] == "erased"
    assert after["deliveries"] == []
    assert [(e["old_status"], e["new_status"]) for e in after["events"]] == [
        ("unsubscribed", "erased")
    ]

    # The address again: the erased row is returned unchanged, nobody becomes active.
    again = cli("subscribers", "add", address)
    assert again.code == 0
    assert again.out == f"{address} is already subscribed (id 1, erased)\n"
    assert cli.rows("SELECT email, name, status, email_hash FROM subscribers") == [
        (None, "", "erased", email_hash(address))
    ]

    missing = cli("subscribers", "show", "99999999999999999999999")
    assert (missing.code, missing.err) == (1, "error: no subscriber '99999999999999999999999'\n")


# -- tick --------------------------------------------------------------------------------------


def test_dry_run_changes_nothing_then_one_lesson_a_day(
    cli: CLI, sequence: Sequence, tmp_path: Path
) -> None:
    """The issue's acceptance flow, with the times two and three days from today."""
    total = len(sequence)
    added = cli(
        "subscribers", "add", "flow@example.org", "--timezone", "Europe/Berlin", "--at", "07:30"
    )
    assert added.code == 0, added.both
    first, second = on_day(2, time(7, 30)), on_day(3, time(7, 30))
    # Added now, so the first lesson falls due before the first tick below.
    assert datetime.fromisoformat(added.out.split()[-1]) < first

    for _ in range(2):
        dry = cli("tick", "--now", first.isoformat(), "--dry-run")
        assert dry.code == 0
        assert dry.out == (
            f"1\tflow@example.org\tday 1 {sequence.lessons[0].id}\n"
            f"1 due at {first.astimezone(UTC).isoformat(timespec='minutes')}"
            " (dry run: nothing sent)\n"
        )
        assert cli.outbox() == set()
    assert cli.rows("SELECT count(*) FROM deliveries") == [(0,)]

    assert cli("tick", "--now", first.isoformat()).out == "claimed 1: sent 1\n"
    day_one = cli.outbox()
    assert len(day_one) == 1
    assert f"Day 1 of {total}" in lesson_text(*day_one)

    assert cli("tick", "--now", second.isoformat()).out == "claimed 1: sent 1\n"
    day_two = cli.outbox() - day_one
    assert len(day_two) == 1 and len(cli.outbox()) == 2  # lesson 2, and not lesson 3
    text = lesson_text(*day_two)
    assert f"Day 2 of {total}" in text and f"Day 3 of {total}" not in text

    out = tmp_path / "flow.json"
    exported = cli("subscribers", "export", "flow@example.org", "--output", str(out))
    assert exported.code == 0 and exported.out == ""
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["subscriber"]["email"] == "flow@example.org"
    assert data["subscriber"]["last_sent_at"] == second.astimezone(UTC).isoformat()
    assert [d["lesson_id"] for d in data["deliveries"]] == [x.id for x in sequence.lessons[:2]]
    assert all(d["kind"] == "sent" and d["message_id"] for d in data["deliveries"])
    assert [e["reason"] for e in data["events"]] == ["added"]


# -- import ------------------------------------------------------------------------------------

HEADER = "email,name,timezone,send_time,discreet,sequence\n"
MIXED = (
    HEADER
    + "one@example.org,One,Europe/Berlin,07:00,yes,no-contact\n"  # line 2
    + "not-an-address,Bad,UTC,08:00,no,\n"
    + "tz@example.org,Tz,Mars/Olympus,08:00,no,\n"
    + "late@example.org,Late,UTC,25:00,no,\n"  # line 5
    + "flag@example.org,Flag,UTC,08:00,maybe,\n"
    + "seq@example.org,Seq,UTC,08:00,no,no-such-sequence\n"
    + "cells@example.org,Cells,UTC,08:00,no,no-contact,surplus\n"  # line 8
    + "two@example.org,,America/New_York,21:15,,\n"
    + "three@example.org,Three,UTC,6:05,no,\n"  # line 10
)
PROBLEMS = [
    "3: email: 'not-an-address' is not an email address",
    "4: timezone: 'Mars/Olympus' is not an IANA timezone",
    "5: send_time: '25:00' is not a 24-hour time HH:MM",
    "6: discreet: 'maybe' is not yes/no",
    "7: sequence: 'no-such-sequence' is not a known sequence",
    "8: row: has more cells than the header",
]


def test_import_reports_bad_rows_by_line_and_imports_the_good_ones(
    cli: CLI, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(MIXED, encoding="utf-8")

    strict = cli("subscribers", "import", "--strict", str(mixed))
    assert strict.code == 1
    assert "6 bad row(s); --strict: nothing imported" in strict.err
    assert cli("subscribers", "list").out == "id\temail\tstatus\ttimezone\tat\tsequence\tnext due\n"

    result = cli("subscribers", "import", str(mixed))
    assert result.code == 1  # some rows were bad
    reported = [line for line in result.err.splitlines() if line.startswith(f"{mixed}:")]
    assert len(reported) == len(PROBLEMS)
    for line, problem in zip(reported, PROBLEMS, strict=True):
        assert line.startswith(f"{mixed}:{problem}"), line
    assert re.search(r"^\[#{20}\] 100% 3/3$", result.err, re.M), result.err  # progress
    assert result.out == "imported 3 new, 0 already present, 6 bad row(s) skipped\n"
    assert cli.rows(
        "SELECT email, name, timezone, send_time, discreet, status FROM subscribers ORDER BY id"
    ) == [
        ("one@example.org", "One", "Europe/Berlin", "07:00", 1, "active"),
        ("two@example.org", "", "America/New_York", "21:15", 0, "active"),
        ("three@example.org", "Three", "UTC", "06:05", 0, "active"),
    ]

    good = tmp_path / "good.csv"
    good.write_text(
        HEADER + "four@example.org,Four,Asia/Tokyo,08:00,no,\n"
        "five@example.org,Five,UTC,09:00,y,no-contact\n",
        encoding="utf-8",
    )
    first = cli("subscribers", "import", str(good))
    assert (first.code, first.out) == (
        0,
        "imported 2 new, 0 already present, 0 bad row(s) skipped\n",
    )
    second = cli("subscribers", "import", str(good))
    assert (second.code, second.out) == (
        0,
        "imported 0 new, 2 already present, 0 bad row(s) skipped\n",
    )
    assert cli.rows("SELECT count(*) FROM subscribers") == [(5,)]

    headless = tmp_path / "headless.csv"
    headless.write_text("email,name,timezone\nsix@example.org,Six,UTC\n", encoding="utf-8")
    refused = cli("subscribers", "import", str(headless))
    assert refused.code == 1
    assert f"{headless}:1: header: missing columns send_time" in refused.err
    assert cli.rows("SELECT count(*) FROM subscribers") == [(5,)]


def many_rows(count: int, extra: str = "") -> str:
    """`count` distinct good rows (reader0…), then `extra` lines, as an import file."""
    zones = ("Europe/Berlin", "America/New_York", "Asia/Kathmandu", "UTC")
    people = "".join(
        f"reader{i}@example.org,R{i},{zones[i % 4]},0{6 + i % 4}:{i % 60:02d},,\n"
        for i in range(count)
    )
    return HEADER + people + extra


def test_import_of_several_batches_keeps_every_rule_of_the_row_by_row_import(
    cli: CLI, tmp_path: Path
) -> None:
    assert IMPORT_BATCH == 1000  # the figures below span three batches
    for address in ("gone@example.org", "left@example.org"):
        assert cli("subscribers", "add", address).code == 0
    assert cli("subscribers", "remove", "gone@example.org", "--erase").code == 0
    assert cli("subscribers", "remove", "left@example.org").code == 0

    extra = (
        "reader7@example.org,Again,UTC,10:00,,\n"  # line 2502: same batch as line 9
        + "not-an-address,Bad,UTC,08:00,,\n"  # line 2503
        + "GONE@example.org,Back,UTC,08:00,,\n"  # erased: must stay erased
        + "left@example.org,Back,UTC,08:00,,\n"  # unsubscribed: must stay so
        + "reader2@example.org,Later,UTC,11:00,,\n"  # a later batch than the first one
        + "fresh@example.org,Fresh,UTC,12:00,yes,\n"
    )
    big = tmp_path / "big.csv"
    big.write_text(many_rows(2500, extra), encoding="utf-8")

    strict = cli("subscribers", "import", "--strict", str(big))
    assert strict.code == 1
    assert strict.err.splitlines() == [
        f"{big}:2503: email: 'not-an-address' is not an email address",
        "1 bad row(s); --strict: nothing imported",
    ]
    assert cli.rows("SELECT count(*) FROM subscribers") == [(2,)]

    result = cli("subscribers", "import", str(big))
    assert result.code == 1
    assert result.out == "imported 2501 new, 4 already present, 1 bad row(s) skipped\n"
    assert result.err.splitlines() == [
        f"{big}:2503: email: 'not-an-address' is not an email address",
        *[f"[{'#' * (p // 5)}{'-' * (20 - p // 5)}] {p:3d}% {n}/2505" for p, n in QUARTERS],
    ]
    assert cli.rows("SELECT count(*) FROM subscribers") == [(2503,)]
    # The first row of an address is the one kept, as when rows went in one at a time.
    assert cli.rows(
        "SELECT name, timezone, send_time FROM subscribers"
        " WHERE email IN ('reader7@example.org', 'reader2@example.org') ORDER BY id"
    ) == [("R2", "Asia/Kathmandu", "08:02"), ("R7", "UTC", "09:07")]
    assert cli.rows("SELECT status, email FROM subscribers WHERE id IN (1, 2) ORDER BY id") == [
        ("erased", None),
        ("unsubscribed", "left@example.org"),
    ]
    # Active, due at their own send time, with the one audit event each that `add` writes.
    assert cli.rows(
        "SELECT count(*) FROM subscribers WHERE id > 2"
        " AND status = 'active' AND next_due_at IS NOT NULL AND confirmed_at IS NOT NULL"
    ) == [(2501,)]
    assert cli.rows(
        "SELECT count(*), count(DISTINCT subscriber_id) FROM events"
        " WHERE actor = 'import' AND reason = 'added' AND old_status IS NULL"
        " AND new_status = 'active' AND subscriber_id > 2"
    ) == [(2501, 2501)]
    [(fresh,)] = cli.rows("SELECT next_due_at FROM subscribers WHERE email = 'fresh@example.org'")
    assert datetime.fromisoformat(fresh).time() == time(12, 0)  # UTC, stored naive

    again = cli("subscribers", "import", str(big))
    assert again.code == 1
    assert again.out == "imported 0 new, 2505 already present, 1 bad row(s) skipped\n"
    assert cli.rows("SELECT count(*) FROM subscribers") == [(2503,)]
    # The 2,501 imports, and the erasure and both events of the one who left.
    assert cli.rows("SELECT count(*) FROM events") == [(2501 + 3,)]


# Progress lines at each quarter of the 2,505 good rows: (percent, rows done).
QUARTERS = ((0, 1), (25, 627), (50, 1253), (75, 1879), (100, 2505))


def test_an_import_killed_midway_keeps_whole_batches_and_a_rerun_completes_it(
    cli: CLI, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(many_rows(20 * IMPORT_BATCH), encoding="utf-8")
    command = [sys.executable, str(RUN_PY), "--config", str(cli.config)]
    with subprocess.Popen(
        [*command, "subscribers", "import", str(rows)],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stderr is not None
        # The 25 % line is printed once the first five batches are committed.
        lines = [child.stderr.readline() for _ in range(2)]
        assert lines[1] == "[#####---------------]  25% 5000/20000\n", lines
        child.kill()
        assert child.wait(timeout=60) == -signal.SIGKILL
    [(kept,)] = cli.rows("SELECT count(*) FROM subscribers")
    # Whole batches only, each with its audit events: nothing half-written.
    assert kept >= 5 * IMPORT_BATCH and kept % IMPORT_BATCH == 0
    assert cli.rows("SELECT count(*), count(DISTINCT subscriber_id) FROM events") == [(kept, kept)]

    rerun = cli("subscribers", "import", str(rows))
    assert rerun.code == 0, rerun.both
    added = 20 * IMPORT_BATCH - kept
    assert rerun.out == f"imported {added} new, {kept} already present, 0 bad row(s) skipped\n"
    assert cli.rows("SELECT count(*), count(DISTINCT email) FROM subscribers") == [(20000, 20000)]
    assert cli.rows("SELECT count(*), count(DISTINCT subscriber_id) FROM events") == [
        (20000, 20000)
    ]


# -- export ------------------------------------------------------------------------------------


def test_export_everyone_as_csv_and_json_with_formulas_defused(cli: CLI, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        HEADER + "calc@example.org,=cmd|' /C calc'!A0,UTC,08:00,yes,\n"
        "plain@example.org,Ann,Europe/Berlin,07:00,no,\n",
        encoding="utf-8",
    )
    assert cli("subscribers", "import", str(people)).code == 0

    table = cli("subscribers", "export", "--format", "csv")
    assert table.code == 0
    rows = list(csv.DictReader(io.StringIO(table.out)))
    assert [(r["id"], r["email"], r["name"], r["discreet"], r["status"]) for r in rows] == [
        ("1", "calc@example.org", "'=cmd|' /C calc'!A0", "yes", "active"),
        ("2", "plain@example.org", "Ann", "no", "active"),
    ]
    assert rows[1]["timezone"] == "Europe/Berlin" and rows[1]["send_time"] == "07:00"

    everyone = json.loads(cli("subscribers", "export", "--format", "json").out)
    assert [p["subscriber"]["email"] for p in everyone] == ["calc@example.org", "plain@example.org"]
    assert everyone[0]["subscriber"]["name"] == "=cmd|' /C calc'!A0"  # JSON is data, not a sheet
    assert all(p["deliveries"] == [] and len(p["events"]) == 1 for p in everyone)

    nowhere = tmp_path / "missing" / "out.csv"
    failed = cli("subscribers", "export", "--format", "csv", "--output", str(nowhere))
    assert failed.code == 1
    assert failed.err.startswith(f"error: cannot write {nowhere}")


# -- status and db -----------------------------------------------------------------------------


async def arrange(database: Path, now: datetime) -> None:
    """Put the imported subscribers into the states `status` reports on."""
    store = await Store.open("", sqlite_path=database)
    try:
        ids = {s.email: s.id async for s in store.iterate()}
        late, overdue, soon = ids["late@example.org"], ids["due@example.org"], ids["soon@x.org"]
        await store.change(late, now=now, actor="test", next_due_at=now - timedelta(hours=2))
        await store.change(overdue, now=now, actor="test", next_due_at=now - timedelta(minutes=30))
        await store.change(soon, now=now, actor="test", next_due_at=now + timedelta(minutes=20))
        await store.record(
            [
                Stop(ids["held@example.org"], "held", "554 5.7.1 Rejected by policy"),
                Retry(
                    ids["retry@example.org"],
                    now - timedelta(minutes=10),
                    2,
                    now - timedelta(hours=1),
                    "451 4.3.0 Try again later",
                ),
            ],
            now,
        )
    finally:
        await store.close()


def test_status_counts_due_failures_and_oldest_overdue_and_db_upgrade(
    cli: CLI, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    addresses = ["late@example.org", "due@example.org", "soon@x.org", "held@example.org"]
    people.write_text(
        HEADER + "".join(f"{a},,UTC,08:00,,\n" for a in [*addresses, "retry@example.org"]),
        encoding="utf-8",
    )
    assert cli("subscribers", "import", str(people)).code == 0
    now = datetime.now(UTC)
    asyncio.run(arrange(cli.database, now))

    status = cli("status")
    assert status.code == 0, status.both
    lines = status.out.splitlines()
    assert lines[:3] == ["subscribers by status:", "  active         4", "  held           1"]
    assert "due now:            3" in lines  # late, due and the retry
    assert "due in next hour:   1" in lines
    assert "sent in last 24 h:  0" in lines
    assert "failures:           retrying 1, bounced 0, held 1, undeliverable 0" in lines
    oldest = (now - timedelta(hours=2)).isoformat(timespec="minutes")
    assert any(line.startswith(f"oldest overdue:     {oldest} (2:00:") for line in lines), lines
    assert "last delivery:      none" in lines
    assert any(line.startswith("failing since:      ") for line in lines), lines

    later = cli("status", "--now", (now + timedelta(days=1)).isoformat())
    assert later.code == 0, later.both
    assert f"oldest overdue:     {oldest} (1 day, 2:00:" in later.out
    assert cli("status", "--now", "2027-01-01T00:00").code == 2  # no offset: a usage error

    upgraded = cli("db", "upgrade")
    assert upgraded.code == 0, upgraded.both
    assert upgraded.out == f"database at {cli.database} is at the latest schema\n"
    assert cli.rows("SELECT count(*) FROM subscribers") == [(5,)]
