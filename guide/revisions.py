"""Alembic's history, current and downgrade with the service's own configuration (no ini)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, column, inspect, select, table

from guide.errors import GuideError
from guide.store import MIGRATIONS, Store

VERSION_TABLE = "alembic_version"
# Alembic's own table, as far as reading it goes.
VERSIONS = table(VERSION_TABLE, column("version_num"))


@dataclass(frozen=True)
class Revision:
    """One migration: its id, the one before it, and the first line of its docstring."""

    id: str
    down: str | None
    title: str


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's configuration built in code: the migrations folder and, to run, a connection."""
    config = AlembicConfig(stdout=io.StringIO())
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        # guide/migrations/env.py runs on this connection, never on a URL of its own.
        config.attributes["connection"] = connection
    return config


def revisions() -> list[Revision]:
    """Every migration, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    found = [
        Revision(
            str(rev.revision),
            str(rev.down_revision) if rev.down_revision else None,
            next(iter((rev.doc or "").strip().splitlines()), ""),
        )
        for rev in script.walk_revisions()
    ]
    return list(reversed(found))


def head() -> str:
    """The newest migration's id."""
    return revisions()[-1].id


def known(revision: str) -> bool:
    """Whether `revision` is one of this code's migrations."""
    return any(rev.id == revision for rev in revisions())


def version_of(connection: Connection) -> str | None:
    """The revision the database says it is at (None: no schema yet)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    row = connection.execute(select(VERSIONS.c.version_num)).first()
    return str(row[0]) if row else None


async def current(store: Store) -> str | None:
    """The revision of the store's database."""
    async with store.engine.connect() as conn:
        return await conn.run_sync(version_of)


async def downgrade(store: Store, target: str) -> tuple[str | None, str | None]:
    """Undo migrations down to `target` ("base": none left); (revision before, after)."""
    if target != "base" and not known(target):
        names = ", ".join(rev.id for rev in revisions())
        raise GuideError(f"no revision {target!r} (known: {names}, or base)")

    def run(connection: Connection) -> tuple[str | None, str | None]:
        before = version_of(connection)
        if before is None:
            raise GuideError("the database has no schema yet: nothing to downgrade")
        if not known(before):
            raise GuideError(
                f"the database is at revision {before!r}, which this version does not know: "
                "downgrade with the version that upgraded it"
            )
        order = [rev.id for rev in revisions()]
        if target != "base" and order.index(target) >= order.index(before):
            raise GuideError(
                f"the database is at {before}: {target} is not below it (db upgrade goes up)"
            )
        try:
            command.downgrade(alembic_config(connection), target)
        except CommandError as err:
            # Alembic's own wording names both revisions ("… is not a valid downgrade target").
            raise GuideError(str(err)) from err
        return before, version_of(connection)

    async with store.engine.begin() as conn:
        return await conn.run_sync(run)
