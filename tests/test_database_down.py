"""PostgreSQL stopped under a running `serve`: /metrics still answers, one line per failed pass.

The server is a throwaway of this module's own (tests/pgserver.py), since the test stops it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from delivery.transports import MemoryTransport
from scheduler.failures import log_failed_pass
from tests.harness import Clock, config_for, make_parts
from tests.pgserver import ROLE, PostgresServer, find_bindir, start_server
from tests.sdnotify import NotifySocket, run_env, start_serve, write_config
from tests.test_health_serve import passes
from tests.test_serve import free_port

pytestmark = pytest.mark.postgres
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        message = "needs PostgreSQL's server binaries (initdb, pg_ctl: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = start_server(bindir)
    try:
        yield server
    finally:
        server.stop()


def metric(text: str, name: str) -> float | None:
    """The value of the sample line `name` (with its labels), None when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_database_down_keeps_metrics_and_logs_one_line_per_failed_pass(
    tmp_path: Path, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    bare = f"postgresql+asyncpg://{ROLE}@127.0.0.1:{postgres.port}/postgres"
    port = free_port()
    config = write_config(tmp_path, port, f"database:\n  url: {bare}\n")
    listener = NotifySocket(str(tmp_path / "notify"))
    serve = await start_serve(
        config, run_env(NOTIFY_SOCKET=listener.address, DRG_DATABASE_PASSWORD=postgres.password)
    )
    node = f'{{node="{socket.gethostname()}:{serve.process.pid}"}}'
    # The same database seen from this process too, for the traceback kept at DEBUG.
    here = dataclasses.replace(config_for(tmp_path / "here"), database_url=postgres.url)
    clock = Clock(START)
    try:
        await serve.line("serving:", seconds=60)  # the log, should it end before
        await listener.until("READY")
        parts = await make_parts(here, clock, MemoryTransport())  # serve has migrated it
        await passes(listener, 1)
        assert postgres.stop_quietly("immediate")

        first = await serve.line("dispatch pass failed")
        await serve.line("dispatch pass failed")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 503
                body = await resp.json()
        await serve.line("dispatch pass failed")
    finally:
        code = await serve.stop()
        listener.close()
    assert first.startswith("ERROR scheduler.dispatch: dispatch pass failed: the database ")
    assert "database.url" in first and postgres.password not in serve.log
    failed = [line for line in serve.log.splitlines() if "dispatch pass failed" in line]
    assert len(failed) >= 3
    assert all("database.url" in line for line in failed)
    assert "Traceback" not in serve.log
    # A stop while the database is away still ends cleanly; the leases run out by themselves.
    assert code == 0, serve.log
    assert "WARNING wiring.parts: leases not released" in serve.log

    # What this process knows is still there; the database's figures are left out.
    assert metric(text, f"drg_database_up{node}") == 0
    assert (metric(text, f"drg_ticks_total{node}") or 0) >= 2
    assert (metric(text, f"drg_failed_passes_total{node}") or 0) >= 1
    assert (metric(text, f"drg_last_success_timestamp_seconds{node}") or 0) > 0
    assert f"drg_pass_duration_seconds_count{node[:-1]}}}" in text
    assert metric(text, "drg_due_backlog") is None
    [problem] = [p for p in body["problems"] if "database" in p]
    assert problem.startswith("the database does not answer") and "database.url" in problem

    # At DEBUG, the traceback follows the one line, as a record of its own.
    caplog.set_level(logging.DEBUG, logger="scheduler.dispatch")
    clock.advance(timedelta(seconds=1))
    with pytest.raises(Exception) as raised:
        await parts.dispatcher.tick()
    log_failed_pass(raised.value, here)
    line, trace = [r for r in caplog.records if r.name == "scheduler.dispatch"][-2:]
    assert line.levelno == logging.ERROR and line.exc_info is None
    assert "database.url" in line.getMessage()
    # The handler's RedactingFilter (set up by any earlier CLI run in this process) renders
    # the traceback into exc_text and clears exc_info: either way it is there.
    assert trace.levelno == logging.DEBUG
    assert trace.exc_info is not None or "Traceback" in (trace.exc_text or "")
    await parts.store.engine.dispose()
