"""`db history` and `db downgrade` on SQLite and PostgreSQL: data kept, the way back up works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from guide.revisions import alembic_config, head, revisions
from guide.store import Store
from guide.transfer import without_password
from tests.backends import database_url
from tests.db_cli import Site, seed, site

__all__ = ["database_url", "site"]

HEAD = head()
FIRST = "0001  Subscribers, deliveries and the audit trail."


def history(current: str | None) -> str:
    """What db history lists, marking `current`."""
    lines = [f"{r.id}  {r.title}{'  (current)' if r.id == current else ''}" for r in revisions()]
    assert lines[0].startswith(FIRST)
    return "\n".join(lines) + "\n"


def configured(
    tmp_path: Path, url: str, mp: pytest.MonkeyPatch, cap: pytest.CaptureFixture[str]
) -> tuple[Site, dict[str, str]]:
    """A site on `url` ('' for SQLite), and the environment that carries its password."""
    if not url:
        return Site(tmp_path, mp, cap), {}
    parsed = make_url(url)
    bare = without_password(parsed).render_as_string(hide_password=False)
    return Site(tmp_path, mp, cap, database={"url": bare}), {
        "DRG_DATABASE_PASSWORD": str(parsed.password)
    }


def shape(conn: Connection) -> tuple[list[str], list[str], tuple[int, ...]]:
    """Tables, the columns of subscribers, and rows per table."""
    found = inspect(conn)
    tables = sorted(found.get_table_names())
    if "subscribers" not in tables:
        return tables, [], ()
    columns = [c["name"] for c in found.get_columns("subscribers")]
    counts = tuple(
        int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())  # noqa: S608
        for name in ("subscribers", "deliveries", "events")
    )
    return tables, columns, counts


async def read_shape(url: str, sqlite_path: Path) -> tuple[list[str], list[str], tuple[int, ...]]:
    store = await Store.open(url, sqlite_path=sqlite_path, migrate=False)
    try:
        async with store.engine.connect() as conn:
            return await conn.run_sync(shape)
    finally:
        await store.close()


def test_downgrade_and_upgrade_again_keep_every_row_on_each_backend(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site, env = configured(tmp_path, database_url, monkeypatch, capsys)
    asyncio.run(seed(database_url, site.database, 5))
    where = make_url(database_url).render_as_string() if database_url else str(site.database)
    shown = site.run("db", "history", **env)
    assert shown.out == history(HEAD) + (f"database at {where}: revision {HEAD}\n"), shown

    down = site.run("db", "downgrade", "0001", **env)
    assert (down.code, down.err) == (0, ""), down
    assert down.out.splitlines()[0] == f"database at {where}: downgraded from {HEAD} to 0001"
    tables, columns, counts = asyncio.run(read_shape(database_url, site.database))
    assert "country" not in columns and "email_hash" in columns
    # Nothing cascaded: a batch-mode copy of subscribers would have emptied these two.
    assert counts == (4, 3, 4)
    assert site.run("db", "history", **env).out.startswith(history("0001"))

    again = site.run("db", "upgrade", **env)
    assert again.code == 0, again
    tables, columns, counts = asyncio.run(read_shape(database_url, site.database))
    assert "country" in columns and counts == (4, 3, 4)

    base = site.run("db", "downgrade", "base", **env)
    assert base.code == 0, base
    tables, columns, counts = asyncio.run(read_shape(database_url, site.database))
    assert [t for t in tables if t != "sqlite_sequence"] == ["alembic_version"]
    assert site.run("db", "upgrade", **env).code == 0


def test_downgrade_refuses_what_it_cannot_do(site: Site) -> None:
    asyncio.run(seed("", site.database, 2))
    unknown = site.run("db", "downgrade", "7")
    assert (unknown.code, unknown.err) == (
        1,
        f"error: no revision '7' (known: {', '.join(r.id for r in revisions())}, or base)\n",
    )
    assert site.run("db", "downgrade", "0001").code == 0
    upward = site.run("db", "downgrade", HEAD)
    assert upward.code == 1
    assert (
        upward.err
        == f"error: the database is at 0001: {HEAD} is not below it (db upgrade goes up)\n"
    )


def test_without_a_database_history_still_lists_the_revisions(site: Site) -> None:
    done = site.run("db", "history")
    assert done.code == 0
    assert done.out == history(None) + (f"database at {site.database}: revision (no schema yet)\n")
    assert not site.database.exists()  # history creates nothing
    refused = site.run("db", "downgrade", "base")
    assert (refused.code, refused.err) == (1, f"error: no database at {site.database}\n")


def test_alembic_run_outside_the_service_says_how_instead_of_a_key_error() -> None:
    with pytest.raises(CommandError, match=r"python run\.py db upgrade \| db downgrade REV"):
        command.downgrade(alembic_config(), "base")
