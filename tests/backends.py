"""Every store test runs on each backend: a SQLite file, and a real PostgreSQL.

PostgreSQL comes from $DRG_TEST_POSTGRES_URL (postgresql+asyncpg://…) when it is set;
otherwise the session starts a throwaway server of its own (tests/pgserver.py) as soon as the
first PostgreSQL case needs one, and stops it at the end. Without PostgreSQL's server binaries
the PostgreSQL cases are skipped with that reason shown in the summary, except in CI
(CI=true), where they fail: CI must never pass without them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.pgserver import find_bindir, start_server

POSTGRES_ENV = "DRG_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of $DRG_TEST_POSTGRES_URL or of a server started for this session."""
    override = os.environ.get(POSTGRES_ENV, "")
    if override:
        yield override
        return
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL tests need PostgreSQL's server binaries (initdb, pg_ctl: "
            f"`apt-get install postgresql`) or ${POSTGRES_ENV}"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = start_server(bindir)
    try:
        yield server.url
    finally:
        server.stop()


async def reset_postgres(url: str) -> None:
    """An empty public schema, so every test starts from nothing."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """'' for the SQLite file in the state directory, or a PostgreSQL URL on a clean schema."""
    if request.param == "sqlite":
        yield ""
        return
    # Asked for here, not as an argument, so SQLite-only runs never start a server.
    url: str = request.getfixturevalue("postgres_server_url")
    await reset_postgres(url)
    yield url
