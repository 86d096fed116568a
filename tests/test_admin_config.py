"""The admin section: the password hash from a secret source only, the CLI that makes it, serve."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from guide.config import load_config
from guide.errors import ConfigError
from guide.passwords import hash_password, verify_password
from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env
from tests.sdnotify import NotifySocket
from tests.test_serve import free_port
from wiring.notify import Notifier, socket_address
from wiring.service import serve

PASSWORD = "another long passphrase"
HASH = hash_password(PASSWORD)


def write_config(folder: Path, extra: str = "") -> Path:
    path = folder / "config.yaml"
    path.write_text(f"state_dir: state\nlessons:\n  dir: {LESSONS}\n{extra}", encoding="utf-8")
    return path


def test_the_hash_comes_from_the_environment_a_file_or_a_credential(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert load_config(path, {}).admin.password_hash == ""
    assert not load_config(path, {}).admin.configured
    from_env = load_config(path, {"DRG_ADMIN_PASSWORD_HASH": HASH}).admin
    assert from_env.password_hash == HASH and from_env.configured
    (tmp_path / "admin-hash").write_text(HASH + "\n", encoding="utf-8")
    (tmp_path / "admin-hash").chmod(0o600)
    with_file = write_config(tmp_path, "admin:\n  password_hash_file: admin-hash\n")
    assert load_config(with_file, {}).admin.password_hash == HASH
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "admin_password_hash").write_text(HASH, encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert load_config(path, env).admin.password_hash == HASH
    # The hash is never shown: not in the configuration's repr either.
    assert HASH not in repr(load_config(path, env))


def test_a_hash_in_config_yaml_is_refused_naming_where_it_belongs(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"admin:\n  password_hash: '{HASH}'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    message = str(caught.value)
    assert "secrets do not belong in config.yaml" in message
    assert "$DRG_ADMIN_PASSWORD_HASH" in message and "admin.password_hash_file" in message
    assert HASH not in message


def test_a_malformed_hash_is_refused_naming_its_source(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"DRG_ADMIN_PASSWORD_HASH": "hunter2"})
    assert "$DRG_ADMIN_PASSWORD_HASH" in str(caught.value)
    assert "python run.py admin hash-password" in str(caught.value)
    weak = "scrypt$2$1$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 86  # parameters far too small
    with pytest.raises(ConfigError):
        load_config(path, {"DRG_ADMIN_PASSWORD_HASH": weak})


def test_a_bad_admin_key_names_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "admin:\n  port: 8081\n  username: Root User\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value).startswith(f"{path}:6: admin.username: must be a user name")


def hash_cli(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "admin", "hash-password"],
        input=stdin,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hash_password_reads_stdin_when_piped_and_prints_only_the_hash() -> None:
    done = hash_cli(PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.startswith("scrypt$") and verify_password(PASSWORD, printed)
    assert PASSWORD not in done.stdout + done.stderr
    assert "DRG_ADMIN_PASSWORD_HASH" in done.stderr
    short = hash_cli("short\n")
    assert short.returncode == 2 and short.stdout == ""
    assert "at least 12 characters" in short.stderr


async def test_serve_runs_the_admin_pages_on_their_own_port(tmp_path: Path) -> None:
    web_port, admin_port = free_port(), free_port()
    extra = (
        f"web:\n  port: {web_port}\n  public_url: http://127.0.0.1:{web_port}\n"
        f"admin:\n  port: {admin_port}\n"
    )
    path = write_config(tmp_path, extra)
    config = load_config(path, {"DRG_ADMIN_PASSWORD_HASH": HASH, "DRG_LINK_SECRET": LINK_SECRET})
    stop = asyncio.Event()
    notify = NotifySocket(f"@drg-admin-test-{admin_port}")
    task = asyncio.create_task(
        serve(config, stop=stop, notifier=Notifier(socket_address(notify.address)))
    )
    try:
        await notify.until("READY")  # both listeners are up before READY=1
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{admin_port}/admin/login") as resp:
                assert resp.status == 200
                assert "Admin sign-in" in await resp.text()
            async with client.get(f"http://127.0.0.1:{web_port}/admin/login") as resp:
                assert resp.status == 404
            async with client.get(f"http://127.0.0.1:{web_port}/subscribe") as resp:
                assert resp.status == 200
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        notify.close()
