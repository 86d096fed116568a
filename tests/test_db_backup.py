"""`db backup` and `db restore` on real SQLite files: consistent, private, checked, atomic."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from guide.revisions import head
from tests.db_cli import Site, seed, site

__all__ = ["site"]

# A process that opens the database, as serve does, and keeps it open until stdin closes.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM subscribers").fetchall()
print("open", flush=True)
sys.stdin.read()
"""
HEAD = head()
COUNTS = "subscribers 4, deliveries 3, events 4"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(query).fetchall()


def test_backup_while_a_writer_is_busy_is_consistent_and_private(site: Site) -> None:
    asyncio.run(seed("", site.database, 5))
    writer = sqlite3.connect(site.database, isolation_level=None)
    try:
        # Committed but still only in the WAL (no checkpoint), as while serve runs ...
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE subscribers SET name = 'in the wal' WHERE id = 1")
        # ... and a transaction still open: a snapshot has its row, never half of it.
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE subscribers SET name = 'uncommitted' WHERE id = 3")
        assert Path(f"{site.database}-wal").stat().st_size > 0
        copy = site.root / "backups" / "guide.sqlite3"
        copy.parent.mkdir()
        done = site.run("db", "backup", str(copy))
    finally:
        writer.close()
    assert (done.code, done.err) == (0, "")
    assert done.out == f"wrote {copy} (revision {HEAD}: {COUNTS})\n"
    assert mode(copy) == 0o600
    assert rows(copy, "SELECT id, name FROM subscribers ORDER BY id") == [
        (1, "in the wal"),
        (2, ""),  # erased
        (3, "P 2"),
        (4, "P 3"),
    ]
    # One self-contained file, whole, nothing left beside it.
    assert rows(copy, "PRAGMA journal_mode") == [("delete",)]
    assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
    assert sorted(p.name for p in copy.parent.iterdir()) == ["guide.sqlite3"]


def test_backup_refuses_to_overwrite_unless_forced(site: Site) -> None:
    asyncio.run(seed("", site.database, 5))
    copy = site.root / "copy.sqlite3"
    copy.write_text("keep me", encoding="utf-8")
    refused = site.run("db", "backup", str(copy))
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == f"error: {copy} exists: choose another name, or --force to replace it\n"
    assert copy.read_text(encoding="utf-8") == "keep me"
    itself = site.run("db", "backup", str(site.database), "--force")
    assert itself.code == 1 and "is the live database itself" in itself.err
    forced = site.run("db", "backup", str(copy), "--force")
    assert forced.code == 0 and COUNTS in forced.out
    assert rows(copy, "SELECT count(*) FROM deliveries") == [(3,)]


def test_backup_without_a_database_or_a_folder_says_so(site: Site) -> None:
    done = site.run("db", "backup", str(site.root / "copy.sqlite3"))
    assert done.code == 1
    assert done.err == f"error: no database at {site.database}: nothing to back up\n"
    assert not (site.root / "copy.sqlite3").exists()
    asyncio.run(seed("", site.database, 2))
    nowhere = site.root / "missing" / "copy.sqlite3"
    done = site.run("db", "backup", str(nowhere))
    assert (done.code, done.err) == (
        1,
        f"error: no folder {nowhere.parent}: create it first (mode 0700)\n",
    )


def test_restore_keeps_the_current_database_and_replaces_it_whole(site: Site) -> None:
    asyncio.run(seed("", site.database, 5))
    copy = site.root / "monday.sqlite3"
    assert site.run("db", "backup", str(copy)).code == 0
    # Tuesday: more changes that the restore takes back.
    with closing(sqlite3.connect(site.database)) as conn, conn:
        conn.execute("DELETE FROM deliveries")
        conn.execute("UPDATE subscribers SET name = 'tuesday'")

    done = site.run("db", "restore", str(copy))
    assert (done.code, done.err) == (0, "")
    kept = sorted(site.state.glob("guide.sqlite3.before-restore-*"))
    assert len(kept) == 1
    assert done.out == (
        f"restored {copy} to {site.database} (revision {HEAD}: {COUNTS})\n"
        f"the database it replaced is kept as {kept[0]}\n"
    )
    assert mode(site.database) == 0o600 and mode(kept[0]) == 0o600
    assert rows(site.database, "SELECT count(*) FROM deliveries") == [(3,)]
    assert rows(kept[0], "SELECT DISTINCT name FROM subscribers") == [("tuesday",)]
    assert not Path(f"{site.database}-wal").exists()
    # The service opens the restored file as its own.
    status = site.run("status")
    assert status.code == 0, status.err


def test_restore_is_refused_while_another_process_has_the_database_open(site: Site) -> None:
    asyncio.run(seed("", site.database, 5))
    copy = site.root / "copy.sqlite3"
    assert site.run("db", "backup", str(copy)).code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site.database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        before = site.database.read_bytes()
        done = site.run("db", "restore", str(copy))
    finally:
        holder.communicate("", timeout=30)
    assert (done.code, done.out) == (1, "")
    assert done.err == (
        f"error: {site.database} is in use by another process: stop the service first "
        "(systemctl stop daily-recovery-guide), then restore\n"
    )
    assert site.database.read_bytes() == before
    assert not list(site.state.glob("*.before-restore-*"))
    assert not list(site.state.glob(".*.tmp*"))


def test_restore_refuses_what_is_not_a_backup_of_this_service(site: Site) -> None:
    asyncio.run(seed("", site.database, 5))
    before = site.database.read_bytes()
    text = site.root / "notes.txt"
    text.write_text("not a database\n" * 100, encoding="utf-8")
    other = site.root / "other.sqlite3"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    newer = site.root / "newer.sqlite3"
    assert site.run("db", "backup", str(newer)).code == 0
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")

    for path, problem in (
        (text, "is not a database of this service (file is not a database)"),
        (
            other,
            "is not a database of this service (no table subscribers, deliveries, events, "
            "alembic_version)",
        ),
        (
            newer,
            "is at schema revision 0099, which this version does not know (newest here: "
            f"{HEAD}): restore it with the version that wrote it",
        ),
        (site.root / "missing.sqlite3", "no backup at"),
    ):
        done = site.run("db", "restore", str(path))
        assert done.code == 1, done
        assert problem in done.err and done.err.count("\n") == 1
    assert site.database.read_bytes() == before
    assert not list(site.state.glob("*.before-restore-*"))
    assert sorted(p.name for p in site.state.iterdir() if p.name.startswith(".")) == []


def test_restore_onto_a_new_host_needs_no_database_there(site: Site, tmp_path: Path) -> None:
    asyncio.run(seed("", site.database, 5))
    copy = tmp_path / "copy.sqlite3"
    assert site.run("db", "backup", str(copy)).code == 0
    site.database.unlink()
    done = site.run("db", "restore", str(copy))
    assert done.code == 0 and "kept as" not in done.out
    assert rows(site.database, "SELECT count(*) FROM subscribers") == [(4,)]


def test_restore_replaces_a_database_damaged_past_opening(site: Site, tmp_path: Path) -> None:
    asyncio.run(seed("", site.database, 5))
    copy = tmp_path / "copy.sqlite3"
    assert site.run("db", "backup", str(copy)).code == 0
    site.database.write_bytes(b"\0garbage" * 4096)
    assert site.run("status").code != 0
    done = site.run("db", "restore", str(copy))
    assert done.code == 0, done
    kept = next(site.state.glob("guide.sqlite3.before-restore-*"))
    assert kept.read_bytes() == b"\0garbage" * 4096
    assert site.run("status").code == 0


def test_a_backup_from_an_older_schema_is_restored_and_upgraded_at_start(
    site: Site, tmp_path: Path
) -> None:
    asyncio.run(seed("", site.database, 5))
    assert site.run("db", "downgrade", "0001").code == 0
    older = tmp_path / "older.sqlite3"
    assert site.run("db", "backup", str(older)).code == 0
    assert site.run("db", "upgrade").code == 0
    done = site.run("db", "restore", str(older))
    assert done.code == 0, done
    assert f"(revision 0001: {COUNTS})" in done.out
    assert done.out.endswith(f"its schema is upgraded to {HEAD} when the service next starts\n")
    assert site.run("status").code == 0
    assert rows(site.database, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert rows(site.database, "SELECT count(*) FROM subscribers WHERE country = ''") == [(4,)]


def test_on_postgresql_backup_and_restore_name_the_tools_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+asyncpg://guide@db.example.org:5433/guide"
    site = Site(tmp_path, monkeypatch, capsys, database={"url": url})
    secret = "correct-horse-battery"
    dump = site.run("db", "backup", "/var/backups/guide.dump", DRG_DATABASE_PASSWORD=secret)
    assert (dump.code, dump.out) == (2, "")
    assert dump.err == (
        "db backup: the database is PostgreSQL; back it up with pg_dump --format=custom "
        "--file=/var/backups/guide.dump --host=db.example.org --port=5433 --username=guide "
        "guide (password from PGPASSWORD or ~/.pgpass)\n"
    )
    back = site.run("db", "restore", "/var/backups/guide.dump", DRG_DATABASE_PASSWORD=secret)
    assert (back.code, back.out) == (2, "")
    assert back.err.startswith("db restore: the database is PostgreSQL; stop the service, then ")
    assert "pg_restore --clean --if-exists --no-owner" in back.err
    assert secret not in dump.err + back.err

    socket = "postgresql+asyncpg://guide@/guide?host=/run/postgresql"
    (tmp_path / "socket").mkdir()
    local = Site(tmp_path / "socket", monkeypatch, capsys, database={"url": socket})
    assert "--host=/run/postgresql --port=5432 --username=guide guide" in (
        local.run("db", "backup", "guide.dump").err
    )
