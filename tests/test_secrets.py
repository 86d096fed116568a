"""No secret is ever printed or logged; database failures are one line; bad requests one line.

The acceptance test runs every command as a real process with every secret in the environment
(link key, DKIM key, database password, SMTP password) at log level DEBUG, against a real
PostgreSQL, and greps stdout, stderr and every file the run wrote for each secret.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url

from cli.logs import BadRequestFilter, RedactingFilter
from delivery.dkim import aligned
from guide.redact import redact
from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env
from tests.statecheck import unchanged
from tests.test_serve import free_port, wait_for_line

SMTP_PASSWORD = "smtp-pw-Quiet7Harbor"
PG = pytest.mark.postgres


def run(
    folder: Path, *args: str, env: dict[str, str], config: str = "config.yaml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--config", config, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def without_password(url: str) -> tuple[str, str]:
    """The URL for config.yaml (no password) and the password, from the test server's URL."""
    parsed = make_url(url)
    plain = f"{parsed.drivername}://{parsed.username}@{parsed.host}:{parsed.port}/{parsed.database}"
    return plain, parsed.password or ""


def pg_config(folder: Path, url: str, extra: str = "") -> None:
    (folder / "config.yaml").write_text(
        f"state_dir: state\nlessons:\n  dir: {LESSONS}\ndatabase:\n  url: {url}\n{extra}",
        encoding="utf-8",
    )
    (folder / "state" / "outbox").mkdir(parents=True)
    (folder / "state" / "outbox" / "kept.eml").write_bytes(b"Subject: kept\r\n\r\nkept\r\n")


# --- the redaction helper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        (
            "postgresql+asyncpg://guide:pa%40ss@db:5432/guide",
            "postgresql+asyncpg://guide:***@db:5432/guide",
        ),
        ("at postgresql://guide:p@ss:w0rd@db/guide now", "at postgresql://guide:***@db/guide now"),
        ("postgresql+asyncpg://guide@db/guide", "postgresql+asyncpg://guide@db/guide"),
        (
            "http://127.0.0.1:8080/subscribe?to=a@b.example",
            "http://127.0.0.1:8080/subscribe?to=a@b.example",
        ),
        ("host=db password=hunter2 dbname=guide", "host=db password=*** dbname=guide"),
        ("dsn: user=guide PASSWORD='two words'", "dsn: user=guide PASSWORD=***"),
    ],
)
def test_redaction_hides_passwords_in_urls_and_dsns(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redaction_hides_given_secrets_and_each_line_of_a_key() -> None:
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    )
    text = f"key {LINK_SECRET} and a line hkiG9w0BAQEFAASC of the key"
    assert redact(text, [LINK_SECRET, pem.encode()]) == "key *** and a line *** of the key"
    assert (
        redact("sqlite+aiosqlite:///state/guide.sqlite3")
        == "sqlite+aiosqlite:///state/guide.sqlite3"
    )


def test_every_log_line_and_traceback_is_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([LINK_SECRET, SMTP_PASSWORD]))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot reach %s", "postgresql+asyncpg://guide:Db-Pw-77@db/guide")
        try:
            raise ValueError(f"relay said no to {SMTP_PASSWORD}")
        except ValueError:
            logger.exception("send failed with key %s", LINK_SECRET)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "postgresql+asyncpg://guide:***@db/guide" in text
    assert "send failed with key ***" in text and "relay said no to ***" in text
    assert "Traceback" in text  # the traceback stays, only its secrets go
    assert "Db-Pw-77" not in text and LINK_SECRET not in text and SMTP_PASSWORD not in text


def test_a_handler_error_keeps_its_traceback() -> None:
    # Only unparsable requests lose theirs: a real bug in a handler must stay debuggable.
    record = logging.LogRecord("aiohttp.server", logging.ERROR, "x", 1, "Error handling", (), None)
    try:
        raise KeyError("bug")
    except KeyError:
        record.exc_info = sys.exc_info()
    assert BadRequestFilter().filter(record)
    assert record.exc_info is not None and record.levelno == logging.ERROR


@pytest.mark.parametrize(
    "signing, sender, expected",
    [
        ("example.org", "example.org", True),
        ("example.org", "news.example.org", True),
        ("mail.example.org", "example.org", True),
        ("EXAMPLE.org.", "example.org", True),
        ("elsewhere.example", "example.org", False),
        ("ample.org", "example.org", False),
    ],
)
def test_dkim_alignment(signing: str, sender: str, expected: bool) -> None:
    assert aligned(signing, sender) is expected


# --- database failures: one line naming database.url, the URL redacted ---------------------------


@PG
def test_a_wrong_postgresql_password_is_one_line(tmp_path: Path, postgres_server_url: str) -> None:
    url, password = without_password(postgres_server_url)
    pg_config(tmp_path, url)
    shown = redact(make_url(url).set(password="wrong-Password-9").render_as_string(False))
    with unchanged(tmp_path / "state"):
        done = run(
            tmp_path,
            "db",
            "upgrade",
            env=clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DATABASE_PASSWORD="wrong-Password-9"),
        )
    user = make_url(url).username
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"configuration error: database.url: cannot open {shown}: password authentication "
        f'failed for user "{user}": wrong password? (it comes from $DRG_DATABASE_PASSWORD, '
        "database.password_file or the database_password credential)\n"
    )
    assert "wrong-Password-9" not in done.stderr and password not in done.stderr


@PG
def test_an_unknown_postgresql_database_is_one_line(
    tmp_path: Path, postgres_server_url: str
) -> None:
    url, password = without_password(postgres_server_url)
    url = make_url(url).set(database="no_such_db").render_as_string(hide_password=False)
    pg_config(tmp_path, url)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DATABASE_PASSWORD=password)
    with unchanged(tmp_path / "state"):
        done = run(tmp_path, "status", env=env)
    shown = redact(make_url(url).set(password=password).render_as_string(False))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f'configuration error: database.url: cannot open {shown}: database "no_such_db" does '
        "not exist: create it first (deploy/postgresql.md)\n"
    )
    assert password not in done.stderr


def test_a_refused_connection_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://guide@127.0.0.1:{port}/guide"
    pg_config(tmp_path, url)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DATABASE_PASSWORD="Secret-Pw-4-db")
    with unchanged(tmp_path / "state"):
        done = run(tmp_path, "status", env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: database.url: cannot reach postgresql+asyncpg://guide:***@127.0.0.1:{port}/guide: "
        "Connection refused (is the server running there?)\n"
    )


def test_a_sqlite_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "guide.sqlite3").write_bytes(b"this is not a database, it is a note\n" * 200)
    (tmp_path / "config.yaml").write_text(f"state_dir: state\nlessons:\n  dir: {LESSONS}\n")
    with unchanged(state):
        done = run(tmp_path, "status", env=clean_env(DRG_LINK_SECRET=LINK_SECRET))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: state_dir: cannot open {state / 'guide.sqlite3'}: file is not a database\n"
    )


@PG
def test_db_upgrade_shows_the_url_without_its_password(
    tmp_path: Path, postgres_server_url: str
) -> None:
    url, password = without_password(postgres_server_url)
    pg_config(tmp_path, url)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DATABASE_PASSWORD=password)
    done = run(tmp_path, "db", "upgrade", env=env)
    assert done.returncode == 0, done.stderr
    shown = redact(make_url(url).set(password=password).render_as_string(False))
    assert ":***@" in shown
    assert done.stdout == f"database at {shown} is at the latest schema\n"
    assert password not in done.stdout + done.stderr


# --- the web: an oversized request is one line, without the request -------------------------------


async def test_an_oversized_request_is_logged_in_one_line_without_its_content(
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        f"state_dir: state\nlessons:\n  dir: {LESSONS}\nweb:\n  port: {port}\n"
        "dispatch:\n  interval_seconds: 3600\n"
    )
    serve = await start_serve(
        tmp_path, clean_env(DRG_LINK_SECRET=LINK_SECRET), stdout=asyncio.subprocess.DEVNULL
    )
    assert serve.stderr is not None
    seen: list[str] = []
    token = "TOKEN-in-the-path-" + "t" * 40
    try:
        await asyncio.wait_for(wait_for_line(serve.stderr, "subscriber pages on", seen), 90)
        answers = []
        for request in (
            f"GET /manage/{token}{'x' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n",
            f"GET /manage/{token} HTTP/1.1\r\nHost: a\r\nX-Long: {'y' * 9000}\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request.encode())
            await writer.drain()
            answers.append((await reader.readline()).decode())
            writer.close()
        # And the service still answers.
        health_url = f"http://127.0.0.1:{port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(health_url) as health:
            assert health.status in (200, 503)
    finally:
        serve.send_signal(signal.SIGTERM)
    await asyncio.wait_for(wait_for_line(serve.stderr, "stopped", seen), 60)
    assert await asyncio.wait_for(serve.wait(), 30) == 0
    assert [answer.split(" ")[1] for answer in answers] == ["400", "400"]
    refusals = [line for line in seen if "aiohttp" in line]
    assert (
        refusals
        == [
            "INFO aiohttp.server: refused a malformed or oversized HTTP request: LineTooLong "
            "(status 400)\n"
        ]
        * 2
    )
    log = "".join(seen)
    assert "Traceback" not in log and "TOKEN" not in log and "xxxx" not in log


# --- acceptance: no secret in any output or file, whatever the command ---------------------------


def dkim_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


COMMANDS: list[tuple[str, ...]] = [
    ("db", "upgrade"),
    ("lessons", "check"),
    ("lessons", "list"),
    ("lessons", "preview", "1", "--out", "preview"),
    ("send-test", "1", "--to", "admin@example.org"),
    ("subscribers", "add", "reader@example.org", "--timezone", "Europe/Berlin", "--at", "00:00"),
    ("subscribers", "import", "people.csv"),
    ("subscribers", "list"),
    ("subscribers", "show", "reader@example.org"),
    ("subscribers", "export", "--format", "json", "--output", "export.json"),
    ("tick", "--dry-run"),
    ("tick", "--now", "2030-01-02T00:30Z"),
    ("status",),
    ("subscribers", "remove", "reader@example.org", "--erase"),
]


@PG
async def test_no_secret_in_any_output_or_file(tmp_path: Path, postgres_server_url: str) -> None:
    url, password = without_password(postgres_server_url)
    pem = dkim_pem()
    port = free_port()
    pg_config(
        tmp_path,
        url,
        "log_level: DEBUG\ndkim:\n  selector: s1\n  domain: localhost\n"
        f"smtp:\n  username: sam\nweb:\n  port: {port}\n",
    )
    (tmp_path / "people.csv").write_text(
        "email,name,timezone,send_time,discreet,sequence\n"
        "other@example.org,Sam,Europe/Paris,07:00,yes,no-contact\n"
    )
    env = clean_env(
        DRG_LINK_SECRET=LINK_SECRET,
        DRG_DATABASE_PASSWORD=password,
        DRG_SMTP_PASSWORD=SMTP_PASSWORD,
        DRG_DKIM_PRIVATE_KEY=pem,
    )
    secrets = {
        "link key": LINK_SECRET,
        "database password": password,
        "SMTP password": SMTP_PASSWORD,
        # Any full line of the key's body would be a leak.
        **{f"DKIM key line {i}": line for i, line in enumerate(pem.splitlines()[1:-1])},
    }
    outputs: dict[str, str] = {}
    for command in COMMANDS:
        done = await asyncio.to_thread(run, tmp_path, *command, env=env)
        assert done.returncode in (0, 1), (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (command, done.stderr[-2000:])
        outputs[" ".join(command)] = done.stdout + done.stderr
    outputs["serve"] = await serve_briefly(tmp_path, env, port)
    assert "DEBUG" in "".join(outputs.values())  # the level really was DEBUG
    outputs |= await asyncio.to_thread(files_under, tmp_path)
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert leaks == []


def files_under(folder: Path) -> dict[str, str]:
    """The text of every file under `folder` (the outbox, previews, exports, the database)."""
    return {
        str(path): path.read_bytes().decode("utf-8", "replace")
        for path in folder.rglob("*")
        if path.is_file()
    }


async def start_serve(
    folder: Path, env: dict[str, str], *, stdout: int
) -> asyncio.subprocess.Process:
    """`run.py serve` on folder/config.yaml, its stderr piped for the log lines."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "run.py"),
        "--config",
        "config.yaml",
        "serve",
        cwd=folder,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=stdout,
    )


async def serve_briefly(folder: Path, env: dict[str, str], port: int) -> str:
    """Run serve until its pages answer, fetch /healthz, stop it; everything it logged."""
    serve = await start_serve(folder, env, stdout=asyncio.subprocess.PIPE)
    assert serve.stderr is not None and serve.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(wait_for_line(serve.stderr, "subscriber pages on", seen), 90)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                seen.append(await health.text())
            async with http.get(f"http://127.0.0.1:{port}/metrics") as metrics:
                seen.append(await metrics.text())
    finally:
        serve.send_signal(signal.SIGTERM)
    await asyncio.wait_for(wait_for_line(serve.stderr, "stopped", seen), 60)
    seen.append((await serve.stderr.read()).decode())
    seen.append((await serve.stdout.read()).decode())
    assert await asyncio.wait_for(serve.wait(), 30) == 0
    return "".join(seen)


def test_the_sqlite_database_is_left_private(tmp_path: Path) -> None:
    # The grep above covers PostgreSQL; the embedded default keeps its file 0600 in a 0700 folder.
    (tmp_path / "config.yaml").write_text(f"state_dir: state\nlessons:\n  dir: {LESSONS}\n")
    done = run(tmp_path, "db", "upgrade", env=clean_env(DRG_LINK_SECRET=LINK_SECRET))
    assert done.returncode == 0, done.stderr
    database = tmp_path / "state" / "guide.sqlite3"
    assert done.stdout == f"database at {database} is at the latest schema\n"
    assert database.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM subscribers").fetchone() == (0,)
