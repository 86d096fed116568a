"""The chaos run, bounded: real `serve` processes SIGKILLed against a faulty relay lose nothing."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from tests.harness import REPO

CHAOS = REPO / "bench" / "chaos.py"
CHECKS = REPO / "bench" / "chaos_checks.py"
# Seed 1 SIGKILLs serve in round 1, and in round 2 its sender child (then SIGTERMs serve).
BOUNDED = ("--rounds", "2", "--subscribers", "200", "--seed", "1")


def load_checks() -> ModuleType:
    """bench/chaos_checks.py as a module (bench/ is scripts, not a package)."""
    return load("chaos_checks", CHECKS)


def load(name: str, path: Path) -> ModuleType:
    """A bench script as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def value(output: str, name: str) -> str:
    """The value on the table line that starts with `name`."""
    for line in output.splitlines():
        if line.startswith(name):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} line in:\n{output}")


def test_two_rounds_of_sigkill_lose_nothing_and_the_checks_can_fail() -> None:
    run = subprocess.run(
        [sys.executable, str(CHAOS), *BOUNDED, "--keep"],
        capture_output=True,
        text=True,
        timeout=120,  # an upper bound against a hang; the run takes 20-50 s
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout
    assert value(output, "kills of serve") == "1"
    # After the child kill serve carried on and stopped on SIGTERM, in time and with 0.
    assert value(output, "kills of sender child") == "1"
    assert value(output, "hung on SIGTERM (serve, tick, sink)") == "0"
    assert value(output, "failed exit after SIGTERM") == "0"
    assert value(output, "sent (recorded in the store)") == "200"
    assert value(output, "lost (recorded, never accepted)") == "0"
    assert value(output, "never delivered") == "0"
    accepted = int(value(output, "accepted by the sink (ledger)"))
    assert accepted == 200 + int(value(output, "duplicates total"))
    work = Path(value(output, "work folder:"))
    try:
        chaos = load_checks()
        database = work / "state" / "guide.sqlite3"
        entries = chaos.read_ledger(work / "ledger.tsv")
        baseline = chaos.compare(database, entries, [])
        assert baseline["lost"] == 0
        # The same checks on a doctored ledger: they are not blind.
        copies = Counter(entry.message_id for entry in entries)
        single = next(i for i, entry in enumerate(entries) if copies[entry.message_id] == 1)
        missing = chaos.compare(database, entries[:single] + entries[single + 1 :], [])
        assert missing["lost"] == 1
        twice = chaos.compare(database, [*entries, entries[single]], [])
        assert twice["unexplained"] == baseline["unexplained"] + 1
        renamed = dataclasses.replace(entries[single], message_id="<other@localhost>")
        doctored = [*entries[:single], renamed, *entries[single + 1 :]]
        assert chaos.compare(database, doctored, [])["id_mismatch"] == 1
    finally:
        shutil.rmtree(work)


def test_a_serve_that_does_not_stop_in_time_is_a_hang_with_its_stacks(tmp_path: Path) -> None:
    chaos = load("chaos", CHAOS)
    procs = sys.modules["chaos_procs"]  # loaded by bench/chaos.py
    state = tmp_path / "state"
    state.mkdir()
    chaos.seed(state, 4, datetime.now(UTC))
    settings = load_checks().Settings(1, 4, 1, True, 2, 20, 10.0)
    log = tmp_path / "serve.log"
    # A relay that never greets (connections wait in the backlog): the sends stay in flight
    # for smtp.timeout (10 s), and stopping waits for them: longer than the 2 s allowed here.
    with socket.socket() as relay, log.open("w") as out:
        relay.bind(("127.0.0.1", 0))
        relay.listen(16)
        config = tmp_path / "chaos.yaml"
        chaos.write_config(config, state, relay.getsockname()[1], settings, rate=0)
        serve = procs.start_service(config, out, "serve")
        try:
            procs.wait_until_serving(log, serve, 60.0)
            procs.wait_until_sending(serve.pid)
            child = procs.sender_child(serve.pid)
            assert child is not None
            hang = procs.stop(serve, 2.0, "serve", log, serve=True)
        finally:
            procs.kill(serve)
    assert hang is not None
    assert serve.returncode == -9  # killed, not stopped
    stacks = hang.stacks.read_text(encoding="utf-8")
    # Where serve's own stop waits (wiring/service.py), from the tasks it logs on SIGUSR1.
    assert "asyncio tasks (SIGUSR1)" in stacks
    assert "in _idle_within" in stacks
    assert f"== py-spy dump --pid {serve.pid}" in stacks
    assert f"== py-spy dump --pid {child}" in stacks
    if procs.PY_SPY.exists():  # py-spy is a tool of the bench, not a dependency
        assert "delivery/transports/process.py" in stacks
    # The sender child ignores SIGTERM: it was killed with serve, not left behind.
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
