"""The project's own process-level chaos run: the real `serve`, SIGKILLed, against a faulty relay.

    .venv/bin/python bench/chaos.py --rounds 20

Every subscriber (timezone UTC) is due at once. A sink in its own process (bench/chaos_sink.py)
answers 451/421, drops connections before the DATA reply, replies slowly and has outages; it
fsyncs every message it accepts to a ledger before its 250. Each round starts `run.py serve`
(a pass a second, rate-limited so the sending spans the rounds) and, 0.5–5 s after its first
send, SIGKILLs it or its sender child (after a child kill the service must carry on and stop
on SIGTERM in time, with status 0). Every wait is bounded: a process that does not stop in
time is a hang, reported with its stacks (bench/chaos_procs.py), and fails the run.
The dead node's leases are released as an operator would, so the next round need not wait
lease_seconds. Then the relay calms down: one last `serve` sends what is due and is stopped
with SIGTERM, and `tick --now` passes (simulated time, minutes ahead, before anyone's next
lesson) deliver what is waiting on a retry backoff. Finally the ledger is compared with the
database. Exit status 1 on any loss or any other failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SINK = Path(__file__).resolve().parent / "chaos_sink.py"
sys.path[:0] = [str(REPO), str(SINK.parent)]

from chaos_checks import Kill, Run, Settings, compare, failed, read_ledger, table  # noqa: E402
from chaos_procs import (  # noqa: E402
    Hang,
    kill,
    sender_child,
    start_service,
    stop,
    wait,
    wait_until_sending,
    wait_until_serving,
)

# Generous upper bounds: past them something hangs. Stopping may take shutdown_grace_seconds
# (10 here) + 5 for in-flight sends and up to 60 for the sender child to finish.
STOP_BOUND = 90.0
DRAIN_BOUND = 300.0
# The sink prints `ready` within a second or two of starting.
START_BOUND = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, state: Path, port: int, settings: Settings, *, rate: float) -> None:
    """A config.yaml for serve and tick: smtp to the sink, a pass a second, no web pages."""
    path.write_text(
        f"""
state_dir: {state}
log_level: INFO
lessons:
  dir: {REPO / "lessons"}
transport: smtp
smtp:
  host: 127.0.0.1
  port: {port}
  security: none
  timeout: 10
dispatch:
  interval_seconds: 1
  batch_size: 50
  connections: {settings.connections}
  commit_every: {settings.commit_every}
  lease_seconds: 30
  rate_per_second: {rate}
  shutdown_grace_seconds: 10
  sender_process: true
web:
  enabled: false
""",
        encoding="utf-8",
    )


def seed(state: Path, count: int, start: datetime) -> None:
    """Insert `count` active subscribers in UTC, all due now, through the store's schema."""
    asyncio.run(_seed(state, count, start))


async def _seed(state: Path, count: int, start: datetime) -> None:
    from sqlalchemy import insert

    from guide.records import email_hash
    from guide.schema import subscribers
    from guide.store import Store

    store = await Store.open("", sqlite_path=state / "guide.sqlite3")
    # The next lesson is due a day after the first, minus a minute: nobody reaches day 2.
    send_time = (start - timedelta(minutes=1)).strftime("%H:%M")
    rows = [
        {
            "sequence_id": "no-contact",
            "email": f"chaos{i}@example.org",
            "email_hash": email_hash(f"chaos{i}@example.org"),
            "timezone": "UTC",
            "send_time": send_time,
            "status": "active",
            "next_due_at": start - timedelta(seconds=1),
            "created_at": start,
            "confirmed_at": start,
            "updated_at": start,
        }
        for i in range(count)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(insert(subscribers), rows)
    await store.close()


def sql_time(moment: datetime) -> str:
    """An instant as the store writes it in SQLite (naive UTC text, so it compares as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Sink:
    """The chaos sink process; `start(calm=True)` after `stop()` brings one that accepts all."""

    def __init__(self, work: Path, port: int, seed: int) -> None:
        self.work, self.port, self.seed = work, port, seed
        self.ledger = work / "ledger.tsv"
        self.process: subprocess.Popen[str] | None = None
        self.faults: Counter[str] = Counter()
        self.starts = 0
        self.hangs: list[Hang] = []

    def start(self, *, calm: bool) -> None:
        """Start it and wait for its `ready`."""
        self.starts += 1
        command = [sys.executable, str(SINK), "--port", str(self.port), "--ledger"]
        command += [str(self.ledger), "--seed", str(self.seed), "--stats", str(self._stats())]
        self.process = subprocess.Popen(
            [*command, *(["--calm"] if calm else [])], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_BOUND)
        if not ready or self.process.stdout.readline().strip() != "ready":
            kill(self.process)
            raise SystemExit(f"the chaos sink did not start within {START_BOUND:g} s")

    def _stats(self) -> Path:
        return self.work / f"sink-{self.starts}.json"

    def stop(self) -> None:
        """SIGTERM, wait (a hang is killed and kept in `hangs`), add its counters."""
        if self.process is None:
            return
        log = self.work / f"sink-{self.starts}.log"  # its stacks go next to it on a hang
        hang = stop(self.process, STOP_BOUND, "the sink", log, serve=False)
        if hang is not None:
            self.hangs.append(hang)
        self.process = None
        if self._stats().exists():
            self.faults.update(json.loads(self._stats().read_text(encoding="utf-8")))

    def lines(self) -> int:
        """Entries in the ledger so far."""
        if not self.ledger.exists():
            return 0
        with self.ledger.open("rb") as handle:
            return sum(1 for _ in handle)


def release_leases(database: Path, pid: int) -> int:
    """What an operator does after a node died: free its leases now, not lease_seconds later."""
    owner = f"{socket.gethostname()}:{pid}"[:64]
    with sqlite3.connect(database, timeout=60) as db:
        cursor = db.execute(
            "UPDATE subscribers SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
            (owner,),
        )
        return cursor.rowcount


def settle(sink: Sink) -> int:
    """The ledger length once the sink has seen the dead connections close."""
    # The sink cancels a session's handler when its connection is lost; give it a moment.
    time.sleep(0.3)
    return sink.lines()


def one_round(number: int, settings: Settings, work: Path, sink: Sink, rng: random.Random) -> Run:
    """Start serve, SIGKILL it (or its sender child, then SIGTERM it) at a random time."""
    result = Run()
    path = work / f"serve-{number}.log"
    with path.open("w") as log:
        serve = start_service(work / "chaos.yaml", log, "serve")
        try:
            kill_at_random(number, settings, serve, sink, rng, result, path)
        finally:
            kill(serve)  # interrupted: leave no service behind
        result.released = release_leases(work / "state" / "guide.sqlite3", serve.pid)
    return result


def kill_at_random(
    number: int,
    settings: Settings,
    serve: subprocess.Popen[str],
    sink: Sink,
    rng: random.Random,
    result: Run,
    log: Path,
) -> None:
    """SIGKILL serve, or its sender child and then SIGTERM serve (a hang is reported)."""
    # On a busy machine Python takes seconds to start: a kill before serve runs tests nothing.
    wait_until_serving(log, serve, STOP_BOUND)
    wait_until_sending(serve.pid)
    time.sleep(rng.uniform(0.5, 5.0))
    child = sender_child(serve.pid) if settings.kill_child and rng.random() < 0.4 else None
    if child is not None:
        os.kill(child, signal.SIGKILL)
        result.kills.append(Kill(number, "child", settle(sink)))
        # The service must carry on with a new sender child, and still stop on SIGTERM.
        time.sleep(rng.uniform(0.5, 3.0))
        hang = stop(serve, STOP_BOUND, f"serve of round {number}", log, serve=True)
        if hang is not None:
            result.hangs.append(str(hang))
            result.kills.append(Kill(number, "serve", settle(sink)))  # stop() killed it
        elif serve.returncode != 0:
            result.failures.append(f"serve of round {number} exited {serve.returncode}; see {log}")
    if serve.poll() is None:
        kill(serve)
        result.kills.append(Kill(number, "serve", settle(sink)))


def due_now(database: Path) -> tuple[int, datetime | None]:
    """Active subscribers due now, and the latest due time of those never sent a lesson."""
    now = sql_time(datetime.now(UTC))
    with sqlite3.connect(database, timeout=60) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM subscribers WHERE status = 'active' AND next_due_at <= ?", (now,)
        ).fetchone()
        (waiting,) = db.execute(
            "SELECT max(next_due_at) FROM subscribers"
            " WHERE status = 'active' AND last_sent_at IS NULL"
        ).fetchone()
    latest = datetime.fromisoformat(waiting).replace(tzinfo=UTC) if waiting else None
    return int(count), latest


def finish(settings: Settings, work: Path, sink: Sink, day_two: datetime, run: Run) -> None:
    """Calm relay; one serve until nothing is due, SIGTERM; then tick --now for the retries."""
    database = work / "state" / "guide.sqlite3"
    sink.stop()
    sink.start(calm=True)
    write_config(work / "calm.yaml", work / "state", sink.port, settings, rate=0)
    path = work / "serve-final.log"
    with path.open("w") as log:
        serve = start_service(work / "calm.yaml", log, "serve")
        try:
            wait_until_serving(path, serve, STOP_BOUND)
            deadline = time.monotonic() + DRAIN_BOUND
            while due_now(database)[0] and time.monotonic() < deadline:
                time.sleep(0.5)
            hang = stop(serve, STOP_BOUND, "the final serve", path, serve=True)
        finally:
            kill(serve)
    if hang is not None:
        run.hangs.append(str(hang))
        release_leases(database, serve.pid)  # so that the ticks can send what it held
    elif serve.returncode != 0:
        run.failures.append(f"the final serve exited {serve.returncode}; see {path}")
    # Transient failures wait 1, 5, 30 minutes…: move time forward instead of waiting.
    for attempt in range(6):
        latest = due_now(database)[1]
        if latest is None:
            break
        if latest >= day_two:
            raise SystemExit(f"a retry is due {latest}, after the first day-2 lesson {day_two}")
        path = work / f"tick-{attempt}.log"
        with path.open("w") as log:
            now = (latest + timedelta(seconds=1)).isoformat()
            tick = start_service(work / "calm.yaml", log, "tick", "--now", now)
            hang = wait(tick, DRAIN_BOUND, f"tick --now {now}", path, serve=False)
        if hang is not None:
            run.hangs.append(str(hang))
            release_leases(database, tick.pid)
        elif tick.returncode != 0:
            raise SystemExit(f"tick --now {now} exited with {tick.returncode}; see {path}")
    sink.stop()


def chaos(settings: Settings, work: Path) -> tuple[Run, dict[str, int]]:
    """Seed, run the rounds, finish calmly and compare."""
    rng = random.Random(settings.seed)
    state = work / "state"
    state.mkdir(parents=True)
    start = datetime.now(UTC)
    seed(state, settings.subscribers, start)
    sink = Sink(work, free_port(), settings.seed)
    write_config(work / "chaos.yaml", state, sink.port, settings, rate=settings.rate)
    run = Run()
    sink.start(calm=False)
    try:
        for number in range(1, settings.rounds + 1):
            done = one_round(number, settings, work, sink, rng)
            run.kills += done.kills
            run.hangs += done.hangs
            run.failures += done.failures
            run.released += done.released
        finish(settings, work, sink, start + timedelta(days=1, minutes=-2), run)
    finally:
        sink.stop()
    run.hangs += [str(hang) for hang in sink.hangs]
    run.faults = sink.faults
    return run, compare(state / "guide.sqlite3", read_ledger(sink.ledger), run.kills)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the table; 1 when a check failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-child", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--commit-every", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0, help="messages/s; 0: spread over rounds")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    # SIGTERM runs the `finally` blocks too, so no serve or sink outlives an interrupted run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # About 2.75 s per round: spread the sending so that kills land mid-send.
    rate = args.rate or max(10.0, args.subscribers / (args.rounds * 2.75))
    settings = Settings(
        args.rounds,
        args.subscribers,
        args.seed,
        args.kill_child,
        args.connections,
        args.commit_every,
        round(rate, 1),
    )
    work = Path(tempfile.mkdtemp(prefix="drg-chaos-"))
    run, result = chaos(settings, work)
    print(table(settings, run, result))
    problems = failed(settings, run, result)
    if problems:
        print(f"FAILED: {'; '.join(problems)} (logs and ledger in {work})")
        return 1
    print("OK: nothing lost; duplicates within the bound")
    if not args.keep:
        shutil.rmtree(work)
    else:
        print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
