"""`serve` as an operator watches it: a refusing relay, a pass that outlasts the interval, journald.

Real `run.py serve` processes: the relay is aiosmtpd on a thread, the passes are counted from
the STATUS= lines serve sends over a real $NOTIFY_SOCKET, and the journal test hands serve a
real pipe as its stderr with $JOURNAL_STREAM naming it (or naming something else).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.logs import JournalFormatter, priority_of
from tests.harness import LESSONS, REPO
from tests.sdnotify import (
    NotifySocket,
    add_subscribers,
    make_due,
    run_env,
    start_serve,
    write_config,
)
from tests.smtpd import SMTPServers, threaded_smtp_servers
from tests.test_serve import free_port

__all__ = ["threaded_smtp_servers"]


async def passes(listener: NotifySocket, count: int) -> None:
    """Wait for `count` more dispatch passes (each ends with a STATUS= line)."""
    for _ in range(count):
        while "STATUS" not in await listener.next(seconds=30):
            pass


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, await r.json()


async def test_a_refusing_relay_is_one_error_a_503_and_one_info_when_it_is_back(
    tmp_path: Path, threaded_smtp_servers: SMTPServers
) -> None:
    with threaded_smtp_servers.threaded() as relay:
        # The relay turns every connection away at its greeting, as a relay out of service
        # does, until the test lets it work again.
        relay.greet(*["421 4.3.2 Service not available, closing channel"] * 200)
        port = free_port()
        smtp = (
            f"transport: smtp\nsmtp:\n  host: 127.0.0.1\n  port: {relay.port}\n  security: none\n"
        )
        config = write_config(tmp_path, port, smtp, dispatch="  relay_alert_seconds: 2\n")
        add_subscribers(config, ["ana@example.org,,UTC,08:00,false,no-contact"])
        make_due(config, "ana@example.org")
        listener = NotifySocket(str(tmp_path / "notify"))
        serve = await start_serve(config, run_env(NOTIFY_SOCKET=listener.address))
        try:
            await listener.until("READY", seconds=60)
            alert = await serve.line("every send has failed")
            assert alert.startswith(f"ERROR scheduler.stats: relay 127.0.0.1:{relay.port}: ")
            assert "smtp.host" in alert and "421" in alert
            status, body = await health(port)
            assert status == 503
            [problem] = body["problems"]
            assert problem.startswith(f"relay 127.0.0.1:{relay.port}: every send has failed for ")
            await passes(listener, 3)  # more passes, still failing: nothing more is said
            assert serve.log.count("every send has failed") == 1

            relay.handler.greetings.clear()
            make_due(config, "ana@example.org")
            back = await serve.line("accepts mail again")
            assert back.startswith(f"INFO scheduler.stats: relay 127.0.0.1:{relay.port} ")
            assert len(relay.messages) == 1
            assert (await health(port))[0] == 200
        finally:
            assert await serve.stop() == 0
            listener.close()
    assert "Traceback" not in serve.log
    assert serve.log.count("ERROR") == 1


async def test_a_pass_that_outlasts_the_interval_is_said_once_not_warned_every_interval(
    tmp_path: Path,
) -> None:
    # Three messages a second for six people: a pass of about two seconds, one every second.
    config = write_config(tmp_path, free_port(), dispatch="  rate_per_second: 3\n")
    add_subscribers(config, [f"p{n}@example.org,,UTC,08:00,false,no-contact" for n in range(6)])
    with sqlite3.connect(config.parent / "state" / "guide.sqlite3") as db:
        db.execute("UPDATE subscribers SET next_due_at = datetime('now', '-1 minute')")
    serve = await start_serve(config, run_env())
    try:
        await serve.line("sent 6", seconds=60)
    finally:
        assert await serve.stop() == 0
    log = serve.log
    assert "maximum number of running instances" not in log
    [said] = [line for line in log.splitlines() if "outlasts" in line]
    assert said.startswith("INFO ") and "dispatch.interval_seconds (1 s)" in said


async def test_a_bad_lesson_edit_is_one_error_line_naming_the_file(tmp_path: Path) -> None:
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS, lessons)
    port = free_port()
    config = write_config(tmp_path, port, lessons=lessons)
    listener = NotifySocket(str(tmp_path / "notify"))
    serve = await start_serve(config, run_env(NOTIFY_SOCKET=listener.address))
    try:
        await listener.until("READY", seconds=60)
        broken = sorted((lessons / "no-contact").glob("*.yaml"))[3]
        broken.write_text("id: [unclosed\n")
        line = await serve.line("lesson files changed but are invalid")
        await passes(listener, 3)
        status, body = await health(port)
    finally:
        assert await serve.stop() == 0
        listener.close()
    assert line.startswith("ERROR ") and f"{broken.name}:" in line
    assert serve.log.count("lesson files changed") == 1 and "Traceback" not in serve.log
    # Still sending the last good version: not an outage.
    assert status == 200 and body["lessons"].startswith("last edit invalid")


def run_with_stderr(config: Path, stream: int, journal: str) -> int:
    """`serve` with `stream` as its stderr and $JOURNAL_STREAM=`journal`; its exit status."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--config", str(config), "serve"],
        env=run_env(JOURNAL_STREAM=journal),
        stderr=stream,
        stdout=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return done.returncode


@pytest.mark.parametrize("matches", [True, False])
def test_log_lines_carry_syslog_priorities_only_on_the_journals_stream(
    tmp_path: Path, matches: bool
) -> None:
    # The port is taken, so serve logs its ERROR and exits at once.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(tmp_path, taken.getsockname()[1])
        read, write = os.pipe()
        try:
            st = os.fstat(write)
            # Another file's device and inode: what a child that inherited the variable sees.
            other = os.stat(config)
            journal = f"{st.st_dev}:{st.st_ino}" if matches else f"{other.st_dev}:{other.st_ino}"
            assert run_with_stderr(config, write, journal) == 1
        finally:
            os.close(write)
        with os.fdopen(read) as pipe:
            lines = pipe.read().splitlines()
    assert lines, "serve logged nothing"
    [error] = [line for line in lines if "cannot listen on" in line]
    if matches:
        assert error.startswith("<3>ERROR wiring.service: cannot listen on 127.0.0.1:")
        for line in lines:
            # A priority on every line, and no timestamp: journald adds its own.
            assert re.match(r"<[0-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ", line), line
    else:
        assert error.startswith("ERROR wiring.service: cannot listen on 127.0.0.1:")
        assert not any(line.startswith("<") for line in lines)


def test_every_line_of_a_traceback_keeps_its_priority() -> None:
    # journald files each line as an entry of its own: a traceback's lines must not land at
    # info priority under an ERROR.
    import logging

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = JournalFormatter("%(levelname)s %(name)s: %(message)s").format(record).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>ERROR x: failed" and lines[-1] == "<3>ValueError: boom"
    assert [priority_of(level) for level in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
