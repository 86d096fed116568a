"""sd_notify: READY, WATCHDOG, STATUS and STOPPING reach a real unix datagram socket from serve."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from delivery.transports import MemoryTransport
from tests.harness import Clock, config_for, make_parts
from tests.sdnotify import (
    NotifySocket,
    add_subscribers,
    make_due,
    outbox,
    run_env,
    start_serve,
    write_config,
)
from tests.test_serve import free_port
from wiring.notify import Notifier, one_line, socket_address, watchdog_seconds
from wiring.watchdog import PassWatch, run_watchdog

START = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)


def test_notify_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@drg/notify") == b"\0drg/notify"  # the abstract namespace
    assert socket_address("") is None
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None  # not a unix socket: nothing is sent


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    pid = os.getpid()
    assert watchdog_seconds({"WATCHDOG_USEC": "60000000"}, pid) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(pid)}, pid) == 0.2
    # Meant for another process (inherited from a parent): not ours to ping.
    assert watchdog_seconds({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_seconds({}, pid) is None


@pytest.mark.parametrize("kind", ["path", "abstract"])
async def test_notifier_sends_datagrams(tmp_path: Path, kind: str) -> None:
    address = str(tmp_path / "notify") if kind == "path" else f"@drg-test-{os.getpid()}-{kind}"
    listener = NotifySocket(address)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    try:
        assert notifier.ready("serving\nsecond line")
        # A newline in a status would start a new field: it is flattened.
        assert await listener.next(5) == {"READY": "1", "STATUS": "serving second line"}
        assert notifier.reloading()
        reloading = await listener.next(5)
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert notifier.stopping()
        assert (await listener.next(5))["STOPPING"] == "1"
    finally:
        notifier.close()
        listener.close()


def test_notifier_without_systemd_or_with_a_gone_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not Notifier.from_env({}).ready()  # not run by systemd: nothing to tell
    gone = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING):
        assert not gone.alive()  # logged, never raised: serving goes on
    assert "could not notify systemd (WATCHDOG=1)" in caplog.text
    assert one_line("x" * 500).endswith("…") and len(one_line("x" * 500)) == 200


async def test_pass_watch_tells_a_slow_pass_from_a_stuck_one(tmp_path: Path) -> None:
    clock = Clock(START)
    parts = await make_parts(config_for(tmp_path), clock, MemoryTransport())
    try:
        dispatcher = parts.dispatcher
        watch = PassWatch(dispatcher, started=START)
        allowed = watch.allowance()
        assert allowed == 3 * 30 + 60  # the /healthz rule, at the default 30 s interval
        await dispatcher.tick()  # a real pass, nobody due
        assert watch.problem(clock.advance(timedelta(seconds=allowed - 1))) is None
        problem = watch.problem(clock.advance(timedelta(seconds=2)))
        assert problem is not None and problem.startswith("no dispatch pass for")

        # A pass that runs for hours but whose sends keep being answered is healthy ...
        dispatcher.idle.clear()  # as Dispatcher.tick does while a pass runs
        for _ in range(5):
            assert watch.problem(clock.advance(timedelta(seconds=allowed - 1))) is None
            dispatcher.stats.delivered(clock())
            assert watch.problem(clock()) is None  # the watchdog looks every WATCHDOG_USEC / 2
        # ... one with no answer for longer than the allowance is stuck.
        assert watch.problem(clock.advance(timedelta(seconds=allowed - 1))) is None
        problem = watch.problem(clock.advance(timedelta(seconds=2)))
        assert problem is not None and "has not moved for" in problem
        dispatcher.stats.failed(clock(), "451 try later")  # a failure is an answer too
        assert watch.problem(clock()) is None
        # A rate limit spaces sends: its spacing is allowed on top.
        dispatcher.settings = dataclasses.replace(dispatcher.settings, rate_per_hour=12)
        assert watch.allowance() == allowed + 300
        dispatcher.idle.set()
    finally:
        await parts.close()


async def test_a_wedged_event_loop_sends_no_watchdog_ping(tmp_path: Path) -> None:
    # The pings come from the event loop itself: while something blocks it, none is sent.
    listener = NotifySocket(str(tmp_path / "notify"))
    clock = Clock(START)
    parts = await make_parts(config_for(tmp_path), clock, MemoryTransport())
    watch = PassWatch(parts.dispatcher, started=START)
    notifier = Notifier(listener.address, watchdog=0.05)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_watchdog(notifier, watch, clock))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(3):
            assert (await listener.next(5))["WATCHDOG"] == "1"
        loop.call_soon_threadsafe(time.sleep, 0.6)  # the loop is stuck for 0.6 s
        for _ in range(5):
            await listener.next(5)
        gaps = [b - a for a, b in itertools.pairwise(listener.arrivals)]
        assert max(gaps) >= 0.5, gaps
        assert statistics.median(gaps) < 0.2, gaps
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        loop.close()
        listener.close()
        await parts.close()


async def test_serve_tells_systemd_ready_watchdog_status_and_stopping(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    add_subscribers(config, ["due@example.org,,Europe/Berlin,08:00,false,no-contact"])
    make_due(config, "due@example.org")
    address = f"@drg-serve-{os.getpid()}"  # abstract; a path (systemd's own kind) is tested above
    listener = NotifySocket(address)
    # WATCHDOG_USEC as systemd sets it for WatchdogSec=0.4s: a ping every 0.2 s.
    env = run_env(NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
    serve = await start_serve(config, env)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = await listener.until("READY", seconds=60)
        assert ready["STATUS"].startswith("serving")
        # READY=1 means the web port is up: the pages answer at once.
        async with aiohttp.ClientSession() as http, http.get(f"{url}/subscribe") as page:
            assert page.status == 200
        status = ""
        while "sent 1" not in status:
            status = (await listener.next(30)).get("STATUS", status)
        assert status.startswith("last pass ") and "claimed 1: sent 1" in status
        start = len(listener.messages)
        while sum("WATCHDOG" in m for m in listener.messages[start:]) < 5:
            await listener.next(5)
        arrivals = zip(listener.messages, listener.arrivals, strict=True)
        pings = [t for m, t in arrivals if "WATCHDOG" in m]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert statistics.median(gaps) < 0.4, gaps  # well within WATCHDOG_USEC
    finally:
        serve.process.send_signal(signal.SIGTERM)
    assert (await listener.until("STOPPING", seconds=30))["STATUS"].startswith("stopping")
    assert await serve.stop() == 0
    listener.close()
    assert "Traceback" not in serve.log
    assert len(outbox(config)) == 1
