"""deploy/README.md's install, into a temporary root: lessons check, verify, and a start."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guide.config import load_config
from guide.errors import ConfigError
from tests.harness import LINK_SECRET, REPO, clean_env
from tests.sdnotify import (
    NotifySocket,
    Serve,
    systemd_analyze,
    systemd_root,
    unit_settings,
)
from tests.test_serve import free_port

DEPLOY = REPO / "deploy"
UNIT_NAME = "daily-recovery-guide.service"
OPT = "/opt/daily-recovery-guide"
ETC = "/etc/daily-recovery-guide"
STATE = "/var/lib/daily-recovery-guide"


def install(root: Path, *, port: int = 8080) -> Path:
    """Steps 2 to 6 of deploy/README.md with every absolute path under `root` (a DESTDIR)."""
    # 2. The checkout and its venv: the lessons and deploy/ from this checkout; the venv's
    # console script runs this checkout's code (pip is not run here).
    checkout = root / OPT.lstrip("/")
    shutil.copytree(REPO / "lessons", checkout / "lessons")
    shutil.copytree(DEPLOY, checkout / "deploy")
    script = checkout / ".venv/bin/daily-recovery-guide"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "run.py"} "$@"\n')
    script.chmod(0o755)
    # 3. The configuration, as shipped (with the paths of the root, and a free port).
    etc = root / ETC.lstrip("/")
    etc.mkdir(parents=True, mode=0o750)
    shipped = (checkout / "deploy/config.yaml").read_text()
    assert "port: 8080\n" in shipped
    installed = in_root(root, shipped).replace("port: 8080\n", f"port: {port}\n")
    (etc / "config.yaml").write_text(installed)
    (etc / "config.yaml").chmod(0o640)
    # 4. The link secret, as a credential file.
    credentials = etc / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "link_secret").write_text(LINK_SECRET + "\n")
    (credentials / "link_secret").chmod(0o600)
    # 5. and 6. The unit and the PostgreSQL drop-in.
    units = root / "etc/systemd/system"
    (units / f"{UNIT_NAME}.d").mkdir(parents=True)
    shutil.copy(checkout / "deploy" / UNIT_NAME, units / UNIT_NAME)
    shutil.copy(checkout / "deploy/postgresql.conf", units / f"{UNIT_NAME}.d/postgresql.conf")
    return root


def in_root(root: Path, text: str) -> str:
    """`text` with the install's absolute paths moved under `root`."""
    for path in (OPT, ETC, STATE):
        text = text.replace(path, f"{root}{path}")
    return text


def command_of(root: Path, setting: str) -> list[str]:
    """The installed unit's ExecStartPre= or ExecStart= command, its paths under `root`."""
    value = unit_settings(root / "etc/systemd/system" / UNIT_NAME)[setting][0]
    return shlex.split(in_root(root, value))


def service_env(root: Path, **extra: str) -> dict[str, str]:
    """What systemd gives the service: its credentials folder (LoadCredential=), no DRG_*."""
    return clean_env(CREDENTIALS_DIRECTORY=str(root / ETC.lstrip("/") / "credentials"), **extra)


def test_the_installed_config_finds_the_checkouts_lessons(tmp_path: Path) -> None:
    root = install(tmp_path / "root")
    check = command_of(root, "ExecStartPre")
    assert check[-2:] == ["lessons", "check"]
    # systemd starts services in /, so nothing may depend on the working directory.
    done = subprocess.run(
        check, cwd="/", env=service_env(root), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 2 sequence(s)")

    # Without base_dir, lessons.dir would be /etc/daily-recovery-guide/lessons: the old bug.
    config = root / ETC.lstrip("/") / "config.yaml"
    text = (DEPLOY / "config.yaml").read_text()
    config.write_text(
        "\n".join(line for line in in_root(root, text).splitlines() if "base_dir" not in line)
    )
    done = subprocess.run(
        check, cwd="/", env=service_env(root), capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert f"{ETC}/lessons:1: no sequence.yaml found" in done.stdout


def test_the_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    root = systemd_root(install(tmp_path / "root"))
    done = subprocess.run(
        [analyze, "verify", f"--root={root}", f"/etc/systemd/system/{UNIT_NAME}"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Warnings (an unknown key, a bad drop-in line) exit 0 too: clean means no output.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


async def test_the_installed_service_starts_and_says_ready(tmp_path: Path) -> None:
    root = install(tmp_path / "root", port=free_port())
    # systemd creates the StateDirectory= (0700, owned by the service user) before ExecStart.
    (root / STATE.lstrip("/")).mkdir(parents=True, mode=0o700)
    listener = NotifySocket(str(tmp_path / "notify"))
    command = command_of(root, "ExecStart")
    assert command[-1] == "serve"
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd="/",
        env=service_env(root, NOTIFY_SOCKET=listener.address),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    serve = Serve(process)
    try:
        ready = await listener.until("READY", seconds=60)
        assert ready["STATUS"].startswith("serving")
    finally:
        process.send_signal(signal.SIGTERM)
    assert await serve.stop() == 0
    listener.close()
    assert (root / STATE.lstrip("/") / "guide.sqlite3").exists()
    # The credential was used: no key was generated into the state folder.
    assert not (root / STATE.lstrip("/") / "link-secret").exists()
    assert "Traceback" not in serve.log


def test_base_dir_makes_relative_paths_relative_to_it(tmp_path: Path) -> None:
    checkout = tmp_path / "opt"
    (checkout / "secrets").mkdir(parents=True)
    (checkout / "secrets/link").write_text(LINK_SECRET)
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.yaml"
    config.write_text(
        f"base_dir: {checkout}\nstate_dir: state\nlessons:\n  dir: lessons\n"
        "links:\n  secret_file: secrets/link\n"
    )
    loaded = load_config(config, {})
    assert loaded.state_dir == checkout / "state"
    assert loaded.lessons_dir == checkout / "lessons"
    assert loaded.link_secret == LINK_SECRET  # *_file keys too
    # Relative itself: to the config file's folder. `base_dir:` alone keeps the default.
    config.write_text("base_dir: ../opt\n")
    assert load_config(config, {}).lessons_dir == etc / "../opt/lessons"
    config.write_text("base_dir:\n")
    assert load_config(config, {}).lessons_dir == etc / "lessons"


def test_a_bad_base_dir_is_a_configuration_error_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    for value, message in (
        ("/nowhere/at/all", "/nowhere/at/all is not a folder"),
        ("[1, 2]", "must be a folder path"),
        ("''", "must be a folder path"),
    ):
        config.write_text(f"log_level: INFO\nbase_dir: {value}\n")
        with pytest.raises(ConfigError) as caught:
            load_config(config, {})
        assert str(caught.value).startswith(f"{config}:2: base_dir: {message}")
