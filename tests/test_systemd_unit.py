"""deploy/daily-recovery-guide.service: notify, watchdog, reload, stop time, and its hardening."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guide.config import DispatchConfig
from tests.harness import REPO
from tests.sdnotify import (
    NotifySocket,
    add_subscribers,
    make_due,
    outbox,
    run_env,
    start_serve,
    systemd_analyze,
    systemd_root,
    unit_settings,
    write_config,
)
from tests.test_serve import free_port

UNIT = REPO / "deploy" / "daily-recovery-guide.service"
EXPOSURE_LIMIT = 2.0
# prctl(PR_SET_MDWE = 65, PR_MDWE_REFUSE_EXEC_GAIN = 1): Linux 6.3's own form of what
# systemd's MemoryDenyWriteExecute= enforces with seccomp; kept across execve.
MDWE_EXEC = (
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0:\n"
    "    sys.exit(99)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def test_the_unit_is_type_notify_with_watchdog_reload_and_room_to_stop() -> None:
    settings = unit_settings(UNIT)
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["WatchdogSec"][0]) >= 10
    # serve waits the grace + 5 s, then 5 s for a cancelled pass, then closes the database.
    grace = DispatchConfig().shutdown_grace_seconds
    assert int(settings["TimeoutStopSec"][0]) >= grace + 30
    assert "postgresql.service" in settings["After"][0].split()
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert settings["MemoryDenyWriteExecute"] == ["yes"]
    assert settings["StateDirectory"] == ["daily-recovery-guide"]
    assert any(value.startswith("link_secret:") for value in settings["LoadCredential"])


def test_systemd_analyze_security_rates_the_unit_at_most_2() -> None:
    analyze = systemd_analyze()
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= EXPOSURE_LIMIT, done.stdout


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    root = systemd_root(tmp_path)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / UNIT.name).write_bytes(UNIT.read_bytes())
    # verify checks that ExecStart='s program exists in the root: the venv's console script.
    script = root / "opt/daily-recovery-guide/.venv/bin/daily-recovery-guide"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    done = subprocess.run(
        [analyze, "verify", f"--root={root}", f"/etc/systemd/system/{UNIT.name}"],
        capture_output=True,
        text=True,
        check=False,
    )
    # An unknown key or a bad value is only a warning (exit 0): clean means no output at all.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def require_mdwe() -> None:
    """Skip visibly (fail in CI) on a kernel without PR_SET_MDWE (Linux 6.3+)."""
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    if subprocess.run([sys.executable, "-c", probe], check=False).returncode != 0:
        message = "this kernel has no PR_SET_MDWE (Linux 6.3+) to stand in for systemd's"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_memory_deny_write_execute_holds_across_exec_and_uvloop_runs() -> None:
    require_mdwe()
    # uvloop runs; then a writable and executable mapping is refused: the setting holds
    # across execve, so serve below runs under it.
    check = (
        "import asyncio, mmap, uvloop\n"
        "uvloop.run(asyncio.sleep(0))\n"
        "print('uvloop ran', flush=True)\n"
        "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    )
    refused = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", check],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.stdout == "uvloop ran\n", refused.stderr
    assert "PermissionError" in refused.stderr, refused.stderr


async def test_serve_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    require_mdwe()
    wrapper = (sys.executable, "-c", MDWE_EXEC)
    config = write_config(tmp_path, free_port())
    add_subscribers(config, ["due@example.org,,Europe/Berlin,08:00,false,no-contact"])
    make_due(config, "due@example.org")
    listener = NotifySocket(str(tmp_path / "notify"))
    # uvloop, aiohttp, Jinja2, SQLAlchemy, pydantic-core and the rest, all under W^X.
    serve = await start_serve(config, run_env(NOTIFY_SOCKET=listener.address), prefix=wrapper)
    try:
        await listener.until("READY", seconds=60)
        while "claimed 1: sent 1" not in (await listener.next(30)).get("STATUS", ""):
            pass
    finally:
        serve.process.send_signal(signal.SIGTERM)
    assert await serve.stop() == 0
    listener.close()
    assert "Traceback" not in serve.log
    assert len(outbox(config)) == 1
