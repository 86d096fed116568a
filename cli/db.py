"""`db …`: upgrade, history, downgrade, backup, restore and migrate-to (SQLite to PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from cli.context import pass_config, with_parts
from guide import backup as backups
from guide import revisions
from guide.clock import system_clock
from guide.config import Config
from guide.errors import ConfigError, GuideError
from guide.redact import redact
from guide.store import Store
from guide.transfer import migrate_to, target_url, without_password
from wiring import Parts

# Not done because it does not apply to this configuration: README's "Exit statuses", 2.
EXIT_NOT_HERE = 2


@click.group("db")
def db_group() -> None:
    """Backups, schema versions, moving to PostgreSQL."""


@db_group.command("upgrade", short_help="Apply every migration.")
@pass_config
def upgrade_command(config: Config) -> int:
    """Apply every migration (serve and tick do this when they start)."""
    return with_parts(config, upgraded)


async def upgraded(parts: Parts) -> int:
    """Say where the database is; building the parts already applied every migration."""
    click.echo(f"database at {_where(parts.config)} is at the latest schema")
    return 0


@db_group.command("history", short_help="List schema revisions, mark the database's.")
@pass_config
def history_command(config: Config) -> int:
    """List the schema revisions, oldest first, marking the database's own."""
    try:
        now_at: str | None = asyncio.run(_current(config))
        note = f"database at {_where(config)}: revision {now_at or '(no schema yet)'}"
    except GuideError as err:
        now_at, note = None, f"database at {_where(config)}: cannot read its revision ({err})"
    for rev in revisions.revisions():
        mark = "  (current)" if rev.id == now_at else ""
        click.echo(f"{rev.id}  {rev.title}{mark}")
    click.echo(redact(note))
    return 0


@db_group.command("downgrade", short_help="Undo migrations down to REVISION.")
@click.argument("revision")
@pass_config
def downgrade_command(config: Config, revision: str) -> int:
    """Undo migrations down to REVISION ("base" removes every table), before installing an
    older version of the service. Stop the service first: serve upgrades again at start."""

    async def run() -> tuple[str | None, str | None]:
        store = await _open(config)
        try:
            return await revisions.downgrade(store, revision)
        finally:
            await store.close()

    before, after = asyncio.run(run())
    click.echo(f"database at {_where(config)}: downgraded from {before} to {after or 'base'}")
    click.echo("install the older version now; starting this one would upgrade it again")
    return 0


@db_group.command("backup", short_help="Copy the SQLite database to FILE.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="replace FILE if it exists")
@pass_config
def backup_command(config: Config, file: Path, force: bool) -> int:
    """Copy the SQLite database to FILE (0600), consistent while the service runs."""
    database = sqlite_file(config)
    if database is None:
        click.echo(f"db backup: {_pg_tool(config, 'pg_dump', file)}", err=True)
        return EXIT_NOT_HERE
    written = backups.backup(database, file, force=force)
    click.echo(f"wrote {file} ({written.summary()})")
    return 0


@db_group.command("restore", short_help="Put a backup FILE in place of the database.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_config
def restore_command(config: Config, file: Path) -> int:
    """Replace the SQLite database with the backup FILE; the current one is kept beside it.

    Stop the service first (it is refused while another process has the database open)."""
    database = sqlite_file(config)
    if database is None:
        click.echo(f"db restore: {_pg_tool(config, 'pg_restore', file)}", err=True)
        return EXIT_NOT_HERE
    done = backups.restore(file, database, now=system_clock())
    click.echo(f"restored {file} to {database} ({done.database.summary()})")
    if done.previous is not None:
        click.echo(f"the database it replaced is kept as {done.previous}")
    if done.database.revision != revisions.head():
        click.echo(f"its schema is upgraded to {revisions.head()} when the service next starts")
    return 0


@db_group.command("migrate-to", short_help="Copy everything into an empty PostgreSQL.")
@click.argument("url")
@pass_config
def migrate_to_command(config: Config, url: str) -> int:
    """Copy everything from the SQLite database into the empty PostgreSQL database at URL.

    URL is postgresql+asyncpg://USER@HOST[:PORT]/DATABASE; its password comes from
    $DRG_DATABASE_PASSWORD, database.password_file or $CREDENTIALS_DIRECTORY/database_password.
    One transaction: counts are verified per table, and nothing is kept if anything fails.
    Stop the service first, so nothing is written to SQLite after the copy."""
    database = sqlite_file(config)
    if database is None:
        raise ConfigError(
            "database.url", "the service already uses PostgreSQL; migrate-to copies from SQLite"
        )
    if not database.is_file():
        raise GuideError(f"no database at {database}: nothing to copy")
    target = target_url(url, config.source, os.environ)

    async def run() -> backups.DatabaseFile:
        # Opening the store applies any migration still due, so both sides end at head.
        store = await Store.open(config.database_url, sqlite_path=database)
        await store.close()
        done = await migrate_to(database, target)
        return backups.DatabaseFile(database, done.revision, done.counts)

    copied = asyncio.run(run())
    shown = without_password(target).render_as_string(hide_password=False)
    click.echo(f"copied {database} to {shown} ({copied.summary()}); counts verified")
    click.echo(f"next: set database.url: {shown} in config.yaml, then start the service")
    return 0


def sqlite_file(config: Config) -> Path | None:
    """The SQLite file the service uses (state_dir's, or a sqlite URL's); None on PostgreSQL."""
    if not config.database_url:
        return config.sqlite_path
    url = make_url(config.database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


async def _open(config: Config) -> Store:
    """The configured store as it is: no migration applied, no SQLite file created."""
    database = sqlite_file(config)
    if database is not None and not database.is_file():
        raise GuideError(f"no database at {database}")
    return await Store.open(config.database_url, sqlite_path=config.sqlite_path, migrate=False)


async def _current(config: Config) -> str | None:
    database = sqlite_file(config)
    if database is not None and not database.is_file():
        return None
    store = await _open(config)
    try:
        return await revisions.current(store)
    finally:
        await store.close()


def _where(config: Config) -> str:
    # The URL carries the password in memory ($DRG_DATABASE_PASSWORD): never print it.
    database = sqlite_file(config)
    return str(database) if database is not None else redact(config.database_url)


def _pg_tool(config: Config, tool: str, file: Path) -> str:
    """One line: the database is PostgreSQL, and the pg_dump or pg_restore command to run."""
    url = make_url(config.database_url)
    # A Unix socket is given as ?host=/run/postgresql, as asyncpg and libpq both read it.
    socket = url.query.get("host")
    host = url.host or (socket if isinstance(socket, str) else None) or "localhost"
    where = [f"--host={host}", f"--port={url.port or 5432}"]
    if url.username:
        where.append(f"--username={url.username}")
    name = url.database or ""
    if tool == "pg_dump":
        args = ["pg_dump", "--format=custom", f"--file={file}", *where, name]
        doing = "back it up with"
    else:
        args = ["pg_restore", "--clean", "--if-exists", "--no-owner", *where, f"--dbname={name}"]
        args.append(str(file))
        doing = "stop the service, then restore with"
    command = " ".join(shlex.quote(arg) for arg in args)
    # The password stays in PGPASSWORD or ~/.pgpass: secrets are never printed.
    return f"the database is PostgreSQL; {doing} {command} (password from PGPASSWORD or ~/.pgpass)"
