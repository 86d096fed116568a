"""`subscribers export --format csv` imports into a fresh database as the same subscribers."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from guide.records import NewSubscriber
from guide.store import Store
from tests.db_cli import NOW, Site, site

__all__ = ["site"]

# (address, name, zone, time, discreet, sequence, country, status): every status but erased,
# and names a spreadsheet would run (or that look as if export had defused them already).
PEOPLE = (
    ("ann@example.org", "Ann", "Europe/Berlin", "07:00", True, "no-contact", "", "active"),
    ("bo@example.org", "=SUM(A1:A9)", "UTC", "21:45", False, "low-contact", "GB", "paused"),
    (
        "cy@example.org",
        "'=already quoted",
        "America/New_York",
        "06:05",
        True,
        "no-contact",
        "US",
        "unsubscribed",
    ),
    (
        "di@example.org",
        "-dash",
        "Australia/Sydney",
        "12:00",
        False,
        "no-contact",
        "other",
        "bounced",
    ),
    ("ed@example.org", "+44 caller", "UTC", "00:00", False, "low-contact", "IE", "held"),
    ("fi@example.org", "'Twas O'Brien", "UTC", "23:59", True, "no-contact", "", "completed"),
    ("gu@example.org", "''+two quotes", "UTC", "08:00", False, "no-contact", "", "pending"),
    ("hy@example.org", 'Hy, "quoted"', "UTC", "08:00", False, "no-contact", "", "undeliverable"),
)


def problems(err: str) -> list[str]:
    """stderr without the progress bar's lines."""
    return [line for line in err.splitlines() if not line.startswith("[")]


async def fill(database: Path) -> None:
    store = await Store.open("", sqlite_path=database)
    try:
        for email, name, zone, at, discreet, sequence, country, status in PEOPLE:
            new = NewSubscriber(email, sequence, zone, at, name, discreet, country)
            await store.add(new, status=status, now=NOW, next_due_at=None, actor="test")
        gone, _ = await store.add(
            NewSubscriber("gone@example.org", "no-contact", "UTC", "08:00"),
            status="active",
            now=NOW,
            next_due_at=None,
            actor="test",
        )
        await store.erase(gone.id, now=NOW, actor="test")
    finally:
        await store.close()


async def people(database: Path) -> list[tuple[object, ...]]:
    store = await Store.open("", sqlite_path=database, migrate=False)
    try:
        return sorted(
            [
                (
                    s.email,
                    s.name,
                    s.timezone,
                    s.send_time,
                    s.discreet,
                    s.sequence_id,
                    s.country,
                    s.status,
                )
                async for s in store.iterate()
            ]
        )
    finally:
        await store.close()


async def scheduled(database: Path) -> list[str]:
    store = await Store.open("", sqlite_path=database, migrate=False)
    try:
        return sorted([str(s.email) async for s in store.iterate() if s.next_due_at is not None])
    finally:
        await store.close()


def test_a_csv_export_imports_into_a_fresh_database_as_the_same_subscribers(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(fill(site.database))
    exported = tmp_path / "everyone.csv"
    done = site.run("subscribers", "export", "--format", "csv", "--output", str(exported))
    assert (done.code, done.err) == (0, "")
    with exported.open(encoding="utf-8", newline="") as handle:
        cells = {row["email"]: row["name"] for row in csv.DictReader(handle)}
    assert cells["bo@example.org"] == "'=SUM(A1:A9)"  # still defused for spreadsheets
    assert cells["cy@example.org"] == "''=already quoted"

    (tmp_path / "new-host").mkdir()
    fresh = Site(tmp_path / "new-host", monkeypatch, capsys)
    first = fresh.run("subscribers", "import", str(exported))
    assert (first.code, problems(first.err)) == (0, []), first
    assert first.out.splitlines()[-1] == (
        "imported 8 new, 0 already present, 0 bad row(s) skipped, "
        "1 erased row(s) left out (no address kept)"
    )
    assert asyncio.run(people(fresh.database)) == sorted(PEOPLE)
    # Only the active person is scheduled; nobody unsubscribed, bounced or held gets mail.
    assert asyncio.run(scheduled(fresh.database)) == ["ann@example.org"]
    again = fresh.run("subscribers", "import", str(exported))
    assert again.out.splitlines()[-1].startswith("imported 0 new, 8 already present")


def test_an_import_refuses_a_status_it_does_not_know(site: Site, tmp_path: Path) -> None:
    file = tmp_path / "people.csv"
    file.write_text(
        "email,timezone,send_time,status\n"
        "a@example.org,UTC,08:00,\n"
        "b@example.org,UTC,08:00,Paused\n"
        "c@example.org,UTC,08:00,asleep\n",
        encoding="utf-8",
    )
    done = site.run("subscribers", "import", str(file))
    assert done.code == 1
    assert problems(done.err) == [
        f"{file}:4: status: 'asleep' is not one of pending, active, paused, completed, "
        "unsubscribed, bounced, held, undeliverable"
    ]
    assert done.out.splitlines()[-1] == "imported 2 new, 0 already present, 1 bad row(s) skipped"
    statuses = [(row[0], row[-1]) for row in asyncio.run(people(site.database))]
    assert statuses == [("a@example.org", "active"), ("b@example.org", "paused")]
