"""Every store test runs on each backend: a SQLite file, and PostgreSQL when one is provided.

PostgreSQL comes from $DRG_TEST_POSTGRES_URL (postgresql+asyncpg://…; `.ci/run` starts a
server and sets it). Without it the PostgreSQL cases are skipped with that reason shown in
the summary, except in CI (CI=true), where a missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENV = "DRG_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test server's URL, or a skip (a failure in CI)."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        message = f"PostgreSQL tests need ${POSTGRES_ENV} (set by .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


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
    url = postgres_url()
    await reset_postgres(url)
    yield url
