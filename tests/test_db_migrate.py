"""`db migrate-to`: SQLite into an empty PostgreSQL, every row, ids continued, all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from guide.records import NewSubscriber
from guide.revisions import head
from guide.schema import metadata
from guide.store import Store
from guide.transfer import TransferError, migrate_to, without_password
from tests.backends import reset_postgres
from tests.db_cli import NOW, Site, seed, site

__all__ = ["site"]

Rows = dict[str, list[dict[str, Any]]]


@pytest.fixture
async def empty_postgres(postgres_server_url: str) -> AsyncIterator[str]:
    """The session's PostgreSQL with an empty public schema."""
    await reset_postgres(postgres_server_url)
    yield postgres_server_url


async def rows_of(url: str, sqlite_path: Path) -> Rows:
    """Every row of every table, in id order, through the store's own types (aware datetimes
    and booleans on both databases)."""
    store = await Store.open(url, sqlite_path=sqlite_path, migrate=False)
    try:
        async with store.engine.connect() as conn:
            return {
                table.name: [
                    dict(row)
                    for row in (await conn.execute(select(table).order_by(table.c.id))).mappings()
                ]
                for table in metadata.sorted_tables
            }
    finally:
        await store.close()


async def tables_of(url: str, sqlite_path: Path) -> list[str]:
    store = await Store.open(url, sqlite_path=sqlite_path, migrate=False)
    try:
        async with store.engine.connect() as conn:
            return sorted(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await store.close()


async def add_one(url: str, sqlite_path: Path) -> int:
    store = await Store.open(url, sqlite_path=sqlite_path)
    try:
        new = NewSubscriber("new@example.org", "no-contact", "UTC", "09:00")
        sub, created = await store.add(
            new, status="active", now=NOW, next_due_at=NOW + timedelta(hours=1), actor="test"
        )
        assert created
        return sub.id
    finally:
        await store.close()


@pytest.mark.postgres
def test_migrate_to_copies_everything_verified_and_ids_continue(
    site: Site, empty_postgres: str, tmp_path: Path
) -> None:
    asyncio.run(seed("", site.database, 6))
    parsed = make_url(empty_postgres)
    # The password from where the service reads its own: database.password_file here.
    secret = tmp_path / "db-password"
    secret.write_text(f"{parsed.password}\n", encoding="utf-8")
    secret.chmod(0o600)
    site.config.write_text(
        site.config.read_text(encoding="utf-8") + f"database:\n  password_file: {secret}\n",
        encoding="utf-8",
    )
    bare = without_password(parsed).render_as_string(hide_password=False)
    before = asyncio.run(rows_of("", site.database))

    done = site.run("db", "migrate-to", bare)
    assert (done.code, done.err) == (0, ""), done
    assert done.out == (
        f"copied {site.database} to {bare} (revision {head()}: subscribers 5, deliveries 4, "
        "events 5); counts verified\n"
        f"next: set database.url: {bare} in config.yaml, then start the service\n"
    )
    assert str(parsed.password) not in done.out
    assert asyncio.run(rows_of(empty_postgres, site.database)) == before
    # The deleted sign-up's id 6 is never handed out again, on PostgreSQL as on SQLite.
    assert asyncio.run(add_one(empty_postgres, site.database)) == 7

    again = site.run("db", "migrate-to", bare)
    assert (again.code, again.out) == (1, "")
    assert again.err == (
        "error: the target database is not empty (subscribers, deliveries, events): migrate-to "
        "copies only into an empty database, so nothing there is overwritten\n"
    )


@pytest.mark.postgres
def test_a_wrong_password_is_a_configuration_error_that_names_where_it_came_from(
    site: Site, empty_postgres: str
) -> None:
    asyncio.run(seed("", site.database, 2))
    bare = without_password(make_url(empty_postgres)).render_as_string(hide_password=False)
    done = site.run("db", "migrate-to", bare, DRG_DATABASE_PASSWORD="not-the-password")
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith(f"configuration error: migrate-to URL: cannot open {bare}: ")
    assert "wrong password? (it comes from $DRG_DATABASE_PASSWORD" in done.err
    assert "not-the-password" not in done.err and done.err.count("\n") == 1


@pytest.mark.postgres
async def test_migrate_to_is_one_transaction_in_small_batches(
    tmp_path: Path, empty_postgres: str
) -> None:
    database = tmp_path / "state" / "guide.sqlite3"
    await seed("", database, 23)
    url = make_url(empty_postgres)
    done = await migrate_to(database, url, batch=4)
    assert done.counts == (("subscribers", 22), ("deliveries", 21), ("events", 22))
    assert await rows_of(empty_postgres, database) == await rows_of("", database)

    # A row PostgreSQL refuses (SQLite keeps any length): nothing at all stays behind.
    await reset_postgres(empty_postgres)
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("UPDATE events SET actor = ? WHERE id = 20", ("x" * 40,))
    with pytest.raises(TransferError, match=r"failed, nothing was committed: value too long"):
        await migrate_to(database, url, batch=4)
    assert await tables_of(empty_postgres, database) == []


def test_migrate_to_refuses_passwords_on_the_command_line_and_other_targets(site: Site) -> None:
    asyncio.run(seed("", site.database, 2))
    inline = site.run("db", "migrate-to", "postgresql+asyncpg://guide:hunter22@db/guide")
    assert (inline.code, inline.out) == (1, "")
    assert inline.err.startswith("error: put no password in the URL: use $DRG_DATABASE_PASSWORD")
    assert "hunter22" not in inline.err
    other = site.run("db", "migrate-to", "mysql://guide@db/guide")
    assert other.err == (
        "error: the target must be a postgresql+asyncpg://user@host/database URL\n"
    )
    nowhere = site.run("db", "migrate-to", "postgresql://guide@127.0.0.1:1/guide")
    assert nowhere.code == 1
    assert nowhere.err.startswith(
        "error: copying into postgresql+asyncpg://guide@127.0.0.1:1/guide"
    )


def test_migrate_to_from_postgresql_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured = Site(
        tmp_path, monkeypatch, capsys, database={"url": "postgresql+asyncpg://g@db/g"}
    )
    done = configured.run("db", "migrate-to", "postgresql+asyncpg://g@other/g")
    assert done.code == 2
    assert done.err.endswith(
        "database.url: the service already uses PostgreSQL; migrate-to copies from SQLite\n"
    )
