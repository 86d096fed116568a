"""The chaos run's processes: start `run.py`, find its sender child, and stop it or catch a hang.

Every wait here is bounded. A process that does not exit in time is a hang: its stacks (the
asyncio tasks `serve` logs on SIGUSR1, and py-spy's dump of it and its children) are saved
next to its log, it is SIGKILLed, and the caller gets a `Hang` to report as a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).with_name("py-spy")
# A SIGKILLed process is gone within milliseconds; past this the machine itself is stuck.
KILL_BOUND = 30.0
# py-spy reads a process's memory; a dump takes well under a second.
DUMP_BOUND = 30.0
# A strong link-signing key (the service refuses weak ones), the same for every process of
# one run: a lesson resent by the next serve must carry the same Message-ID and links.
LINK_SECRET = secrets.token_hex(32)


@dataclass(frozen=True)
class Hang:
    """A process that did not exit in time: what it was, and where its stacks are."""

    what: str
    stacks: Path

    def __str__(self) -> str:
        return f"{self.what} hung (stacks in {self.stacks})"


def start_service(config: Path, log: IO[str], *args: str) -> subprocess.Popen[str]:
    """`run.py --config … <args>`, its output into `log`."""
    env = {**os.environ, "DRG_LINK_SECRET": LINK_SECRET, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--config", str(config), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def children(pid: int) -> list[int]:
    """The pids of the direct children of `pid` (none once it has exited)."""
    found: list[int] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in listing.read_text().split()]
        except OSError:
            continue  # the thread ended while we looked
    return found


def sender_child(pid: int) -> int | None:
    """The pid of the sender process of `serve` (it is started on the first send), or None."""
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"delivery.transports.process" in cmdline:
            return child
    return None


def wait_until_sending(pid: int) -> None:
    """Until serving serve has started its sender child (its first send), or 5 s if none."""
    deadline = time.monotonic() + 5.0
    while sender_child(pid) is None and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until_serving(log: Path, serve: subprocess.Popen[str], bound: float) -> None:
    """Until serve logs that it runs: a SIGTERM before its handler is installed kills it."""
    deadline = time.monotonic() + bound
    while "serving:" not in log.read_text(encoding="utf-8", errors="replace"):
        if serve.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start; see {log}")
        time.sleep(0.1)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL `process` (if it still runs) and reap it."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(KILL_BOUND)
    except subprocess.TimeoutExpired as err:
        raise SystemExit(f"pid {process.pid} outlived SIGKILL by {KILL_BOUND:g} s") from err


def stop(
    process: subprocess.Popen[str], bound: float, what: str, log: Path, *, serve: bool
) -> Hang | None:
    """SIGTERM `process` and wait `bound` seconds; past that, its stacks are saved, it is killed."""
    process.terminate()
    return wait(process, bound, what, log, serve=serve)


def wait(
    process: subprocess.Popen[str], bound: float, what: str, log: Path, *, serve: bool
) -> Hang | None:
    """Wait `bound` seconds for `process` to exit; a Hang (stacks saved, killed) if it does not."""
    try:
        process.wait(bound)
        return None
    except subprocess.TimeoutExpired:
        pass
    stacks = log.with_suffix(".hang.txt")
    stacks.write_text(dump(process.pid, log, serve=serve), encoding="utf-8")
    # The sender child ignores SIGTERM and outlives its parent until its pipe closes: kill both.
    family = children(process.pid)
    kill(process)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    hang = Hang(f"{what} (pid {process.pid}, not exited {bound:g} s after SIGTERM)", stacks)
    print(f"HANG: {hang}\n{stacks.read_text(encoding='utf-8')}", file=sys.stderr, flush=True)
    return hang


def dump(pid: int, log: Path, *, serve: bool) -> str:
    """Where `pid` and its children wait: serve's task stacks from its log, then py-spy's dumps."""
    parts: list[str] = []
    if serve:
        # serve logs its asyncio tasks on SIGUSR1 (wiring/service.py); other commands would
        # die of the signal, so only serve gets it.
        before = log.stat().st_size
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
        with log.open("rb") as handle:
            handle.seek(before)
            tasks = handle.read().decode("utf-8", errors="replace")
        parts.append(f"== asyncio tasks of {pid} (SIGUSR1, from {log.name})\n{tasks}")
    for each in [pid, *children(pid)]:
        parts.append(f"== py-spy dump --pid {each}\n{py_spy(each)}")
    return "\n".join(parts)


def py_spy(pid: int) -> str:
    """py-spy's dump of the threads of `pid`, or why there is none."""
    if not PY_SPY.exists():
        return f"(no py-spy next to {sys.executable})"
    try:
        done = subprocess.run(
            [str(PY_SPY), "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=DUMP_BOUND,
        )
    except subprocess.TimeoutExpired:
        return f"(py-spy did not answer in {DUMP_BOUND:g} s)"
    return done.stdout + done.stderr
