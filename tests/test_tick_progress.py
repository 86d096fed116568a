"""`tick` draws a progress bar on a terminal and prints only its summary line when piped."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from guide.records import NewSubscriber
from guide.store import Store
from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
DUE = 40


async def seed(database: Path) -> None:
    store = await Store.open("", sqlite_path=database)
    try:
        for i in range(DUE):
            new = NewSubscriber(f"t{i}@example.org", "no-contact", "UTC", "08:00")
            await store.add(
                new, status="active", now=NOW, next_due_at=NOW - timedelta(hours=1), actor="test"
            )
    finally:
        await store.close()


def site(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    settings = {"state_dir": str(tmp_path / "state"), "lessons": {"dir": str(LESSONS)}}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    asyncio.run(seed(tmp_path / "state" / "guide.sqlite3"))
    return config


def tick(config: Path, now: datetime, *, terminal: bool) -> tuple[int, str]:
    """Run `tick --now` with stdout on a pseudo-terminal or a pipe; (status, what it showed)."""
    argv = [sys.executable, str(REPO / "run.py"), "--config", str(config), "tick"]
    argv += ["--now", now.isoformat()]
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, TERM="xterm-256color", COLUMNS="100")
    if not terminal:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        return done.returncode, done.stdout
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(60), shown.decode("utf-8", "replace")


def test_on_a_terminal_tick_shows_a_bar_and_when_piped_only_its_summary(tmp_path: Path) -> None:
    config = site(tmp_path)
    code, shown = tick(config, NOW, terminal=True)
    assert code == 0, shown
    assert "sending" in shown and f"{DUE}/{DUE}" in shown, shown
    assert "━" in shown  # rich's bar
    assert f"claimed {DUE}: sent {DUE}" in shown

    # Piped (cron mails, logs): the summary line, no bar and no control codes.
    code, piped = tick(config, NOW + timedelta(days=1, minutes=1), terminal=False)
    assert code == 0
    assert piped == f"claimed {DUE}: sent {DUE}\n"
