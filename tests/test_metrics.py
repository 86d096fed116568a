"""/metrics: the node label, the last good pass, pass durations; a failed pass told in a line."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import MemoryTransport, SMTPTransport
from guide.config import SMTPConfig
from scheduler.failures import describe, log_failed_pass
from scheduler.stats import PASS_BUCKETS
from tests.harness import Clock, add_many, config_for, make_parts, next_due
from tests.test_serve import free_port
from web.app import create_app
from wiring import Parts, web_context

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[Parts, Clock, TestClient[Any, Any]]]:
    clock = Clock(START)
    parts = await make_parts(config_for(tmp_path), clock, MemoryTransport())
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(web_context(parts))))
    await client.start_server()
    yield parts, clock, client
    await client.close()
    await parts.close()


def samples(text: str) -> dict[str, float]:
    """Every sample line of the Prometheus text format, by name and labels."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


async def test_metrics_carry_the_node_the_last_success_and_a_duration_histogram(
    service: tuple[Parts, Clock, TestClient[Any, Any]],
) -> None:
    parts, clock, client = service
    node = parts.dispatcher.node
    label = f'node="{node}"'
    before = samples(await (await client.get("/metrics")).text())
    assert before[f"drg_last_success_timestamp_seconds{{{label}}}"] == 0
    assert before[f"drg_pass_duration_seconds_count{{{label}}}"] == 0
    assert before[f"drg_database_up{{{label}}}"] == 1

    await add_many(parts, [("ana@example.org", "UTC", "08:00")], START)
    due = await next_due(parts)
    assert due is not None
    clock.now = due
    assert (await parts.dispatcher.tick()).results["sent"] == 1
    clock.advance(timedelta(seconds=30))
    await parts.dispatcher.tick()
    after = samples(await (await client.get("/metrics")).text())
    assert after[f"drg_last_success_timestamp_seconds{{{label}}}"] == clock.now.timestamp()
    assert after[f"drg_pass_duration_seconds_count{{{label}}}"] == 2
    assert after[f"drg_pass_duration_seconds_sum{{{label}}}"] > 0
    # Cumulative buckets, each a label of its own, up to +Inf.
    buckets = [
        after[f'drg_pass_duration_seconds_bucket{{le="{float(b)}",{label}}}'] for b in PASS_BUCKETS
    ]
    assert (
        buckets == sorted(buckets)
        and after[f'drg_pass_duration_seconds_bucket{{le="+Inf",{label}}}'] == 2
    )
    assert after[f'drg_messages_total{{{label},result="sent"}}'] == 1
    assert after[f"drg_failed_passes_total{{{label}}}"] == 0
    assert after[f"drg_relay_up{{{label}}}"] == 1
    assert after["drg_due_backlog"] == 0  # the database's figures: no node label

    body = await (await client.get("/healthz")).json()
    assert body["node"] == node and body["problems"] == []


async def test_a_failed_pass_is_one_line_naming_the_key_and_a_bug_keeps_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="scheduler.dispatch")
    config = config_for(tmp_path)
    # SQLite's own error for a database file it cannot open (here: a folder).
    tmp_path.joinpath("folder.sqlite3").mkdir()
    try:
        sqlite3.connect(tmp_path / "folder.sqlite3").execute("select 1")
    except sqlite3.Error as err:
        line = describe(err, config)
        assert line is not None and "state_dir" in line and str(config.sqlite_path) in line
    else:
        raise AssertionError("sqlite3 opened a folder")

    # A relay that refuses, raised where a transport raises it.
    smtp = SMTPConfig(host="127.0.0.1", port=free_port(), security="none", timeout=5)
    relayed = dataclasses.replace(config, transport="smtp", smtp=smtp)
    with pytest.raises(OSError) as refused:  # aiosmtplib's SMTPConnectError is a ConnectionError
        await SMTPTransport(smtp).client().connect()
    line = describe(refused.value, relayed)
    assert line is not None and line.startswith(f"relay 127.0.0.1:{smtp.port} unreachable: ")
    assert "smtp.host" in line

    try:
        settings: dict[str, int] = {}
        settings["missing"]  # a bug, not a fault of the surroundings
    except KeyError as err:
        assert describe(err, config) is None
        log_failed_pass(err, config)
    [record] = [r for r in caplog.records if r.name == "scheduler.dispatch"]
    # The handler's RedactingFilter (set up by any earlier CLI run in this process) renders
    # the traceback into exc_text and clears exc_info: either way it is kept.
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None or "Traceback" in (record.exc_text or "")
