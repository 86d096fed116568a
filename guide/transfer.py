"""`db migrate-to`: copy the SQLite file into an empty PostgreSQL, in one checked transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, Table, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from guide.backup import TABLES
from guide.config import one_line_secret
from guide.config_reader import ConfigFile
from guide.database_errors import open_failure
from guide.errors import ConfigError, GuideError
from guide.redact import redact
from guide.revisions import VERSION_TABLE, alembic_config, head, version_of
from guide.schema import metadata
from guide.yamlsrc import load_yaml

# Rows per read and per INSERT batch: a million subscribers never sit in memory at once.
BATCH = 5000


class TransferError(GuideError):
    """migrate-to refused or failed; nothing was committed to the target."""


@dataclass(frozen=True)
class Transferred:
    """What was copied: the schema revision and the rows of each table (verified equal)."""

    revision: str
    counts: tuple[tuple[str, int], ...]


def target_url(url: str, config_path: Path | None, env: Mapping[str, str]) -> URL:
    """The PostgreSQL URL to copy into, its password from where the service reads its own."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise TransferError(f"{url!r} is not a database URL") from err
    if parsed.drivername not in ("postgresql", "postgresql+asyncpg"):
        raise TransferError("the target must be a postgresql+asyncpg://user@host/database URL")
    if parsed.password:
        # A command line is visible to every user in ps and lands in shell history.
        raise TransferError(
            "put no password in the URL: use $DRG_DATABASE_PASSWORD, database.password_file "
            "or $CREDENTIALS_DIRECTORY/database_password"
        )
    parsed = parsed.set(drivername="postgresql+asyncpg")
    password = _password(config_path, env)
    return parsed.set(password=password) if password else parsed


def without_password(url: URL) -> URL:
    """`url` with no password at all (URL.set(password=None) keeps the one it has)."""
    return URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )


def _password(config_path: Path | None, env: Mapping[str, str]) -> str:
    """$DRG_DATABASE_PASSWORD, config.yaml's database.password_file, or the credential file."""
    data: Any = load_yaml(config_path) if config_path is not None else None
    source = str(config_path) if config_path is not None else "(defaults)"
    base = config_path.resolve().parent if config_path is not None else Path.cwd()
    section = data.get("database") if isinstance(data, dict) else None
    file_value = section.get("password_file") if isinstance(section, dict) else None
    reader = ConfigFile(data, source=source, base=base, env=env)
    return reader.secret(
        "database_password", str(file_value or ""), "database.password_file", one_line_secret
    )


async def migrate_to(sqlite_path: Path, url: URL, *, batch: int = BATCH) -> Transferred:
    """Copy every table of `sqlite_path` (at the latest revision) into the empty database `url`."""
    if not await asyncio.to_thread(sqlite_path.is_file):
        raise TransferError(f"no database at {sqlite_path}: nothing to copy")
    source = create_engine(f"sqlite:///{sqlite_path}")
    # One read transaction for the whole copy: counts and rows come from one snapshot even if
    # something writes meanwhile (pysqlite would otherwise read each SELECT on its own).
    event.listen(source, "connect", _no_implicit_transactions)
    event.listen(source, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    target = create_async_engine(url)
    shown = without_password(url).render_as_string(hide_password=False)
    try:
        revision, counts = await _transfer(source, target, sqlite_path, batch)
    except (SQLAlchemyError, OSError) as err:
        failure = open_failure(err, "migrate-to URL", shown)
        if isinstance(failure, ConfigError):  # the password, pg_hba.conf, rights: one hint
            raise failure from err
        raise TransferError(
            f"copying into {shown} failed, nothing was committed: {_reason(err)}"
        ) from err
    finally:
        source.dispose()
        await target.dispose()
    return Transferred(revision, counts)


async def _transfer(
    source: Engine, target: AsyncEngine, sqlite_path: Path, batch: int
) -> tuple[str, tuple[tuple[str, int], ...]]:
    """The copy itself: one read snapshot of SQLite, one write transaction on PostgreSQL."""
    with source.begin() as reader:
        revision = version_of(reader)
        if revision != head():
            raise TransferError(
                f"{sqlite_path} is at revision {revision}, not {head()}: run db upgrade first"
            )
        counts = tuple((name, _count(reader, name)) for name in TABLES[:-1])
        floor = _sqlite_sequences(reader)
        async with target.begin() as writer:
            await _refuse_non_empty(writer)
            await writer.run_sync(lambda conn: command.upgrade(alembic_config(conn), "head"))
            for table in metadata.sorted_tables:
                await _copy_table(reader, writer, table, batch)
                await _reset_sequence(writer, table, floor.get(table.name, 0))
            await _verify(writer, dict(counts), revision)
    return revision, counts


def _reason(err: BaseException) -> str:
    """The first line of what the driver said (SQLAlchemy adds a link, asyncpg a DETAIL)."""
    if isinstance(err, DBAPIError) and err.orig is not None:
        err = err.orig
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return redact(lines[0] if lines else type(err).__name__)


def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so the SELECTs share a snapshot.
    dbapi_connection.isolation_level = None


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())


def _sqlite_sequences(conn: Connection) -> dict[str, int]:
    """AUTOINCREMENT's high-water marks: ids of deleted rows are never handed out again."""
    if not inspect(conn).has_table("sqlite_sequence"):
        return {}
    rows = conn.execute(text("SELECT name, seq FROM sqlite_sequence"))
    return {str(name): int(seq) for name, seq in rows}


async def _refuse_non_empty(conn: AsyncConnection) -> None:
    """Refuse a target that already holds any row of ours (an empty schema at head is fine)."""

    def rows_in(sync: Connection) -> list[str]:
        present = set(inspect(sync).get_table_names())
        held = [name for name in TABLES[:-1] if name in present and _count(sync, name)]
        if VERSION_TABLE in present and version_of(sync) not in (None, head()):
            held.append(f"{VERSION_TABLE} at {version_of(sync)}")
        return held

    held = await conn.run_sync(rows_in)
    if held:
        raise TransferError(
            f"the target database is not empty ({', '.join(held)}): migrate-to copies only "
            "into an empty database, so nothing there is overwritten"
        )


async def _copy_table(
    reader: Connection, writer: AsyncConnection, table: Table, batch: int
) -> None:
    """Every row of `table` in primary-key order, `batch` rows at a time (never all at once)."""
    ordered = select(table).order_by(*table.primary_key.columns)
    result = reader.execution_options(yield_per=batch).execute(ordered)
    for chunk in result.mappings().partitions():
        await writer.execute(table.insert(), [dict(row) for row in chunk])


async def _reset_sequence(writer: AsyncConnection, table: Table, floor: int) -> None:
    """Point an id sequence past every copied id, as SQLite's AUTOINCREMENT would continue."""
    column = table.autoincrement_column
    if column is None:
        return
    highest = (await writer.execute(select(func.max(column)))).scalar()
    value = max(int(highest or 0), floor)
    sequence = f"pg_get_serial_sequence('{table.name}', '{column.name}')"
    if value:
        await writer.execute(text(f"SELECT setval({sequence}, :value, true)"), {"value": value})
    else:
        await writer.execute(text(f"SELECT setval({sequence}, 1, false)"))


async def _verify(writer: AsyncConnection, counts: dict[str, int], revision: str) -> None:
    """Rows per table and the schema revision equal on both sides, or nothing is committed."""

    def check(sync: Connection) -> list[str]:
        wrong = [
            f"{name}: {count} in SQLite, {_count(sync, name)} copied"
            for name, count in counts.items()
            if _count(sync, name) != count
        ]
        if version_of(sync) != revision:
            wrong.append(f"{VERSION_TABLE}: {revision} in SQLite, {version_of(sync)} copied")
        return wrong

    wrong = await writer.run_sync(check)
    if wrong:
        raise TransferError("the copy does not match, nothing committed: " + "; ".join(wrong))
