"""`run.py serve` as systemd runs it: sends what is due, and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import aiohttp
import pytest

from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_line(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    """Read log lines until one contains `needle` (the process tells us; nothing polls)."""
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"process ended before {needle!r}; log:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_sends_due_lessons_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    config = tmp_path / "config.yaml"
    port = free_port()
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nlessons:\n  dir: {LESSONS}\nweb:\n  port: {port}\n"
    )
    env = {**os.environ, "DRG_LINK_SECRET": LINK_SECRET}
    run = [sys.executable, str(REPO / "run.py"), "--config", str(config)]
    add = await asyncio.create_subprocess_exec(
        *run,
        "subscribers",
        "add",
        "due@example.org",
        "--timezone",
        "Europe/Berlin",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await add.wait() == 0
    # Make the subscriber due a minute ago, as if their send time had just passed.
    with sqlite3.connect(tmp_path / "state" / "guide.sqlite3") as db:
        db.execute("UPDATE subscribers SET next_due_at = datetime('now', '-1 minute')")

    serve = await asyncio.create_subprocess_exec(
        *run, "serve", env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    assert serve.stderr is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(wait_for_line(serve.stderr, "sent 1", seen), 60)
        # The subscriber pages are served by the same process, in the same loop.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/subscribe") as page:
                assert page.status == 200
                assert 'name="email"' in await page.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert (await health.json())["scheduler"] == "running"
    finally:
        serve.send_signal(signum)
    await asyncio.wait_for(wait_for_line(serve.stderr, "stopped", seen), 60)
    assert await asyncio.wait_for(serve.wait(), 30) == 0
    log = "".join(seen)
    assert "Traceback" not in log
    assert LINK_SECRET not in log  # the link secret is never logged

    files = list((tmp_path / "state" / "outbox" / "new").iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert message["To"] == "due@example.org"
    assert "Day 1 of 30" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    with sqlite3.connect(tmp_path / "state" / "guide.sqlite3") as db:
        assert db.execute(
            "SELECT count(*) FROM subscribers WHERE lease_owner IS NOT NULL"
        ).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)
    assert oct((tmp_path / "state" / "guide.sqlite3").stat().st_mode & 0o777) == "0o600"


async def test_sighup_reloads_instead_of_ending_serve(tmp_path: Path) -> None:
    # SIGHUP's default action ended serve with status 129, leases held, and systemd's
    # Restart=on-failure does not restart a death by SIGHUP. Outside systemd too, it reloads.
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nlessons:\n  dir: {LESSONS}\nweb:\n  enabled: false\n"
    )
    env = {**clean_env(), "DRG_LINK_SECRET": LINK_SECRET}
    run = [sys.executable, str(REPO / "run.py"), "--config", str(config)]
    serve = await asyncio.create_subprocess_exec(
        *run, "serve", env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    assert serve.stderr is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(wait_for_line(serve.stderr, "serving:", seen), 60)
        for _ in range(2):
            serve.send_signal(signal.SIGHUP)
            await asyncio.wait_for(wait_for_line(serve.stderr, "reloaded ", seen), 30)
    finally:
        serve.send_signal(signal.SIGTERM)
    await asyncio.wait_for(wait_for_line(serve.stderr, "stopped", seen), 60)
    assert await asyncio.wait_for(serve.wait(), 30) == 0
    assert "changed: nothing that applies while running" in "".join(seen)
