"""Backing up and restoring the SQLite file: SQLite's online backup, checked, private, atomic."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guide.errors import GuideError
from guide.private import FILE_MODE
from guide.revisions import VERSION_TABLE, known, revisions
from guide.schema import metadata

# Every table a backup holds, parents first: the schema's tables and Alembic's version.
TABLES = (*(table.name for table in metadata.sorted_tables), VERSION_TABLE)
# SQLite's own files beside the database: a stale one must never meet another database file.
COMPANIONS = ("-wal", "-shm", "-journal")


class BackupError(GuideError):
    """A backup or restore refused or failed; the message says what to do."""


@dataclass(frozen=True)
class DatabaseFile:
    """A checked database file of this service: where, its schema revision, rows per table."""

    path: Path
    revision: str
    counts: tuple[tuple[str, int], ...]

    def summary(self) -> str:
        """`revision 0002: subscribers 3, deliveries 40, events 9`."""
        rows = ", ".join(f"{name} {count}" for name, count in self.counts)
        return f"revision {self.revision}: {rows}"


@dataclass(frozen=True)
class Restored:
    """What a restore did: the database now in place, and where the previous one was kept."""

    database: DatabaseFile
    previous: Path | None


def backup(source: Path, target: Path, *, force: bool = False) -> DatabaseFile:
    """Copy the live database at `source` to `target` (0600), consistent while serve writes."""
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the live database itself: choose another name")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: choose another name, or --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"no folder {target.parent}: create it first (mode 0700)")
    with _temporary(target) as temporary:
        with contextlib.closing(sqlite3.connect(source, timeout=10)) as live:
            # The online backup API copies a snapshot: in WAL mode serve keeps writing, and
            # what it commits meanwhile is simply not in this copy.
            _copy(live, temporary)
        checked = check_file(temporary, target)
        _publish(temporary, target, replace=force)
    return checked


def restore(source: Path, target: Path, *, now: datetime) -> Restored:
    """Put the backup `source` in place of the database `target`, keeping the current one."""
    if not source.is_file():
        raise BackupError(f"no backup at {source}")
    if source.resolve() == target.resolve():
        raise BackupError(f"{source} is the live database itself")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _temporary(target) as temporary:
        try:
            with contextlib.closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as b:
                _copy(b, temporary)
        except sqlite3.DatabaseError as err:
            raise BackupError(f"{source} is not a database of this service ({err})") from err
        checked = check_file(temporary, target)
        previous = None
        if target.exists():
            with _exclusive(target):
                previous = _keep(target, now)
                for suffix in COMPANIONS:
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
                os.replace(temporary, target)
        else:
            os.replace(temporary, target)
        _sync_folder(target.parent)
    return Restored(checked, previous)


def check_file(path: Path, shown: Path | None = None) -> DatabaseFile:
    """`path` checked: intact, this service's tables, a revision this code knows; rows counted."""
    name = shown or path
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise BackupError(f"{name} is damaged: {verdict[0] if verdict else 'no answer'}")
            present = {
                str(row[0])
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            missing = [table for table in TABLES if table not in present]
            if missing:
                raise BackupError(
                    f"{name} is not a database of this service (no table {', '.join(missing)})"
                )
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = str(row[0]) if row else ""
            counts = tuple((table, _count(conn, table)) for table in TABLES[:-1])
    except sqlite3.DatabaseError as err:
        raise BackupError(f"{name} is not a database of this service ({err})") from err
    if not known(revision):
        newest = revisions()[-1].id
        raise BackupError(
            f"{name} is at schema revision {revision or '(none)'}, which this version does not "
            f"know (newest here: {newest}): restore it with the version that wrote it"
        )
    return DatabaseFile(shown or path, revision, counts)


def _count(conn: sqlite3.Connection, table: str) -> int:
    """Rows in one of the schema's tables (a name from TABLES, never from outside)."""
    found = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
    return int(found[0])


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """SQLite's backup API from `source` into the (empty, private) file `target`, then fsync."""
    with contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
        # One self-contained file: no -wal beside it to lose when it is copied elsewhere.
        copy.execute("PRAGMA journal_mode=DELETE")
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """An empty 0600 file beside `target` (same filesystem, so the final rename is atomic)."""
    path = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    for suffix in ("", *COMPANIONS):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    # Created 0600 from the first byte: the copy holds addresses of people at risk.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    try:
        yield path
    finally:
        for suffix in ("", *COMPANIONS):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _publish(temporary: Path, target: Path, *, replace: bool) -> None:
    """Move the finished copy to `target`: atomically, and never over a file unless asked."""
    if replace:
        os.replace(temporary, target)
    else:
        try:
            # link() fails if the name was taken meanwhile, where rename() would overwrite it.
            os.link(temporary, target)
        except FileExistsError as err:
            raise BackupError(f"{target} exists: choose another name, or --force") from err
    _sync_folder(target.parent)


@contextlib.contextmanager
def _exclusive(database: Path) -> Iterator[None]:
    """Hold `database` alone: refused while any other process (serve, tick) has it open."""
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        try:
            # Leaving WAL needs every other connection closed; it also checkpoints the WAL
            # into the file, so the copy kept below is whole.
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as err:
            raise BackupError(
                f"{database} is in use by another process: stop the service first "
                "(systemctl stop daily-recovery-guide), then restore"
            ) from err
        except sqlite3.DatabaseError:
            # Damaged past opening ("file is not a database"): what a restore is for. Nothing
            # can be using it, and it is kept as it is, beside the restored one.
            yield
            return
        if mode is None or str(mode[0]).lower() != "delete":
            raise BackupError(f"{database} is in use by another process: stop the service first")
        yield
    finally:
        conn.close()


def _keep(database: Path, now: datetime) -> Path:
    """Copy the current database (held exclusively) to DATABASE.before-restore-<UTC time>."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out, database.open("rb") as current:
        while chunk := current.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return kept


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
