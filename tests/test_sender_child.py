"""A sender child that dies or stops answering mid-pass never stops the guide (real signals)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session
from sqlalchemy import select

from delivery.transports.process import ProcessConnection, ProcessTransport
from guide.schema import deliveries, subscribers
from scheduler.dispatch import TickReport
from tests.harness import Clock, add_many, config_for, day_of, make_parts
from tests.smtpd import Fault, RecordingSMTP, SMTPServer, SMTPServers, smtp_servers
from wiring import Parts, make_transport

__all__ = ["smtp_servers"]

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
PEOPLE = 300
CONNECTIONS = 4
# Far above what a pass of a few hundred messages takes; only there to turn a hang into a failure.
BOUND = 60.0


async def build(tmp_path: Path, server: SMTPServer, **smtp: Any) -> tuple[Parts, Clock]:
    """A service on a fresh SQLite file, sending to `server` through a sender child process."""
    config = config_for(
        tmp_path,
        connections=CONNECTIONS,
        batch_size=50,
        commit_every=20,
        shutdown_grace_seconds=5.0,  # only used to end a hung pass, when the test fails
    )
    config = dataclasses.replace(config, transport="smtp", smtp=server.smtp_config(**smtp))
    transport = make_transport(config)
    assert isinstance(transport, ProcessTransport)
    clock = Clock(START + timedelta(hours=10))
    parts = await make_parts(config, clock, transport)
    people = [(f"p{i}@example.org", "UTC", "09:00") for i in range(PEOPLE)]
    await add_many(parts, people, START)
    return parts, clock


def script_faults(server: SMTPServer) -> None:
    """Transient relay faults among the first messages; none of them ends in a delivery."""
    rng = random.Random(9)
    server.script(
        *(
            rng.choice(
                [
                    None,
                    None,
                    None,
                    Fault.reply_at("RCPT", "450 4.2.0 Mailbox busy"),
                    Fault.reply_at("DATA", "451 4.3.0 Try again later"),
                    Fault.disconnect_at("DATA"),
                ]
            )
            for _ in range(120)
        )
    )


def hold_data_at(server: SMTPServer, count: int) -> tuple[asyncio.Event, asyncio.Event]:
    """Slow replies, and hold one DATA reply once `count` messages have arrived.

    Returns (reached, release): `reached` is set while that reply is held, so the sender
    child is certainly mid-send; setting `release` lets the server go on.
    """
    reached, release = asyncio.Event(), asyncio.Event()
    original: Callable[..., Awaitable[str]] = server.handler.handle_DATA

    async def handle_data(srv: RecordingSMTP, session: Session, envelope: SMTPEnvelope) -> str:
        if len(server.messages) >= count and not reached.is_set():
            reached.set()
            await release.wait()
        elif len(server.messages) % 5 == 0:
            await asyncio.sleep(0.01)  # a slow reply now and then keeps several sends in flight
        return await original(srv, session, envelope)

    server.handler.handle_DATA = handle_data  # type: ignore[method-assign, assignment]
    return reached, release


async def within_bound(parts: Parts, tick: asyncio.Task[TickReport]) -> TickReport:
    """The pass's report; a test failure, not a hang, if the pass does not end within BOUND."""
    done, _ = await asyncio.wait({tick}, timeout=BOUND)
    if not done:
        # Stopping makes the pass cut its stuck workers off, so the test can end and report.
        parts.dispatcher.stop()
        await asyncio.wait({tick}, timeout=BOUND)
        pytest.fail(f"the dispatch pass did not end within {BOUND:g} s")
    return tick.result()


async def rows(parts: Parts) -> tuple[list[Any], set[int]]:
    """Every subscriber row, and the ids of those with a lesson recorded."""
    async with parts.store.engine.connect() as conn:
        people = list(await conn.execute(select(subscribers)))
        sent = set((await conn.execute(select(deliveries.c.subscriber_id))).scalars())
    return people, sent


async def assert_nobody_lost(parts: Parts, now: datetime) -> list[Any]:
    """Each subscriber has the lesson recorded or a transient retry scheduled; none is leased.

    Returns the rows of those waiting for a retry.
    """
    people, sent = await rows(parts)
    assert len(people) == PEOPLE
    assert all(p.lease_owner is None for p in people)  # nothing left claimed
    waiting = [p for p in people if p.id not in sent]
    for p in waiting:
        assert p.status == "active"
        assert p.attempts == 1 and p.last_error
        assert p.next_due_at is not None and p.next_due_at > now
    return waiting


def assert_day_one_once(server: SMTPServer) -> None:
    """Everyone got day 1; only the sends in flight at the kill may have arrived twice."""
    counts = Counter(m.rcpt_tos[0] for m in server.messages if day_of(m.data) == 1)
    assert sorted(counts) == sorted(f"p{i}@example.org" for i in range(PEOPLE))
    assert max(counts.values()) <= 2
    assert sum(1 for n in counts.values() if n == 2) <= CONNECTIONS


def assert_no_stray_errors(caplog: pytest.LogCaptureFixture) -> None:
    """No unretrieved future exceptions, and no send that raised instead of failing transient."""
    gc.collect()  # asyncio reports an unretrieved exception when its future is collected
    assert [r.getMessage() for r in caplog.records if r.name in ("asyncio", "scheduler")] == []
    failed = [r for r in caplog.records if r.getMessage().startswith("sending to subscriber")]
    assert failed == []


async def test_a_killed_sender_child_fails_its_sends_as_transient_and_is_replaced(
    tmp_path: Path, smtp_servers: SMTPServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await smtp_servers.start()
    script_faults(server)
    reached, release = hold_data_at(server, 100)
    parts, clock = await build(tmp_path, server)
    transport = parts.transport
    assert isinstance(transport, ProcessTransport)
    now = clock()
    try:
        tick = asyncio.create_task(parts.dispatcher.tick())
        await asyncio.wait_for(reached.wait(), BOUND)
        killed = transport.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        release.set()
        report = await within_bound(parts, tick)

        # The pass went on through a new child and accounted for everyone it claimed.
        assert transport.pid not in (None, killed)
        assert report.claimed == PEOPLE
        assert report.results["sent"] + report.results["retry"] == PEOPLE
        waiting = await assert_nobody_lost(parts, now)
        in_flight = [p for p in waiting if "sender process ended" in p.last_error]
        # The held send at least; at most what the connections had handed to the child.
        assert 1 <= len(in_flight) <= CONNECTIONS * ProcessConnection.depth
        died = [r.getMessage() for r in caplog.records if "died (signal 9)" in r.getMessage()]
        assert len(died) == 1 and str(killed) in died[0]

        # Past the retry time, the next pass sends the rest; no fault is left in the script.
        clock.advance(timedelta(hours=1))
        second = await within_bound(parts, asyncio.create_task(parts.dispatcher.tick()))
        assert second.results["sent"] == len(waiting)
        assert transport.pid not in (None, killed)
        people, sent = await rows(parts)
        assert len(sent) == PEOPLE and all(p.attempts == 0 for p in people)
    finally:
        release.set()
        await parts.close()
    assert_day_one_once(server)
    assert_no_stray_errors(caplog)


async def test_a_stuck_sender_child_is_killed_and_replaced(
    tmp_path: Path, smtp_servers: SMTPServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await smtp_servers.start()
    reached, release = hold_data_at(server, 50)
    # smtp.timeout of 1 s: the child gets 12 s to answer a request before it counts as stuck.
    parts, clock = await build(tmp_path, server, timeout=1.0)
    transport = parts.transport
    assert isinstance(transport, ProcessTransport)
    stopped: int | None = None
    try:
        tick = asyncio.create_task(parts.dispatcher.tick())
        await asyncio.wait_for(reached.wait(), BOUND)
        stopped = transport.pid
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)  # alive, pipes open, but never answers again
        release.set()
        report = await within_bound(parts, tick)

        assert report.results["sent"] + report.results["retry"] == PEOPLE
        waiting = await assert_nobody_lost(parts, clock())
        assert any("did not answer in 12 s" in p.last_error for p in waiting)
        assert transport.pid not in (None, stopped)
        killed = [r.getMessage() for r in caplog.records if "was killed" in r.getMessage()]
        assert len(killed) == 1 and "did not answer within 12 s" in killed[0]

        clock.advance(timedelta(hours=1))
        second = await within_bound(parts, asyncio.create_task(parts.dispatcher.tick()))
        assert second.results["sent"] == len(waiting)
    finally:
        release.set()
        if stopped is not None:
            # Should the test fail before the child was killed, do not leave it stopped.
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        await parts.close()
    assert_day_one_once(server)
    assert_no_stray_errors(caplog)
