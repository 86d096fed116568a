"""systemd's side, for tests: a real notify socket, and `run.py serve` started as systemd would."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env


class NotifySocket:
    """A bound unix datagram socket, as $NOTIFY_SOCKET names it; records every message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # '@name' is Linux's abstract namespace: no file, a leading NUL byte instead.
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []
        self.arrivals: list[float] = []

    async def next(self, seconds: float = 30) -> dict[str, str]:
        """The next datagram, as its KEY=value fields."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), seconds)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(fields)
        self.arrivals.append(time.monotonic())
        return fields

    async def until(self, key: str, value: str = "1", seconds: float = 30) -> dict[str, str]:
        """Read datagrams until one has key=value; that one."""
        deadline = time.monotonic() + seconds
        while True:
            fields = await self.next(max(0.01, deadline - time.monotonic()))
            if fields.get(key) == value:
                return fields

    def close(self) -> None:
        """Close (and unlink a path socket)."""
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


@dataclass
class Serve:
    """A running `run.py serve` whose log lines are read as they come."""

    process: asyncio.subprocess.Process
    seen: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        """Everything it has logged so far."""
        return "".join(self.seen)

    async def line(self, needle: str, seconds: float = 30) -> str:
        """Read log lines until one contains `needle`; that line."""
        assert self.process.stderr is not None

        async def read() -> str:
            assert self.process.stderr is not None
            while True:
                text = (await self.process.stderr.readline()).decode()
                if not text:
                    raise AssertionError(f"serve ended before {needle!r}; log:\n{self.log}")
                self.seen.append(text)
                if needle in text:
                    return text

        return await asyncio.wait_for(read(), seconds)

    async def stop(self, signum: int = signal.SIGTERM, seconds: float = 60) -> int:
        """Send `signum`, read the log to its end; the exit status."""
        assert self.process.stderr is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        rest = await asyncio.wait_for(self.process.stderr.read(), seconds)
        self.seen.append(rest.decode())
        return await asyncio.wait_for(self.process.wait(), seconds)


def write_config(
    folder: Path, port: int, extra: str = "", *, lessons: Path = LESSONS, dispatch: str = ""
) -> Path:
    """folder/config.yaml: state in folder, the shipped lessons, maildir, a pass every second.

    `extra` adds top-level sections, `dispatch` lines (indented) to the dispatch section.
    """
    config = folder / "config.yaml"
    config.write_text(
        f"state_dir: {folder / 'state'}\nlessons:\n  dir: {lessons}\n"
        f"web:\n  port: {port}\n{extra}dispatch:\n  interval_seconds: 1\n{dispatch}"
    )
    return config


def run_env(**extra: str) -> dict[str, str]:
    """The environment serve gets: no secret of the test run's, the test link key, `extra`."""
    return clean_env(DRG_LINK_SECRET=LINK_SECRET, **extra)


def add_subscribers(config: Path, rows: list[str]) -> None:
    """Import CSV rows (email,name,timezone,send_time,discreet,sequence), none of them due."""
    people = config.parent / "people.csv"
    people.write_text("email,name,timezone,send_time,discreet,sequence\n" + "\n".join(rows) + "\n")
    command = [sys.executable, str(REPO / "run.py"), "--config", str(config)]
    done = subprocess.run(
        [*command, "subscribers", "import", str(people)],
        env=run_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(config.parent / "state" / "guide.sqlite3") as db:
        db.execute("UPDATE subscribers SET next_due_at = datetime('now', '+1 day')")


def make_due(config: Path, email: str) -> None:
    """Make one subscriber due a minute ago, as if their send time had just passed."""
    with sqlite3.connect(config.parent / "state" / "guide.sqlite3") as db:
        changed = db.execute(
            "UPDATE subscribers SET next_due_at = datetime('now', '-1 minute') WHERE email = ?",
            (email,),
        ).rowcount
    assert changed == 1


async def start_serve(config: Path, env: dict[str, str], *, prefix: tuple[str, ...] = ()) -> Serve:
    """`run.py --config CONFIG serve` (after `prefix`, e.g. a wrapper), stderr piped."""
    process = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        str(REPO / "run.py"),
        "--config",
        str(config),
        "serve",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    return Serve(process)


def outbox(config: Path) -> list[Path]:
    """The messages written so far, oldest first."""
    new = config.parent / "state" / "outbox" / "new"
    return sorted(new.iterdir(), key=lambda path: path.stat().st_mtime_ns) if new.exists() else []


def systemd_analyze() -> str:
    """The systemd-analyze program, or a visible skip (a failure in CI)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze is not installed (Debian: apt install systemd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def systemd_root(root: Path) -> Path:
    """`root` made a tree `systemd-analyze verify --root=` can load our unit in.

    It needs systemd's own units (sysinit.target and the rest) and the programs the unit
    runs (/bin/kill for ExecReload=), all inside the root.
    """
    host_units = next(
        folder
        for folder in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
        if folder.is_dir()
    )
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    kill = shutil.which("kill") or "/bin/kill"
    shutil.copy2(kill, root / "usr/bin/kill")
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    return root


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by key (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings
