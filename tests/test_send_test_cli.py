"""Acceptance: `python run.py send-test` in a child process, against a real SMTP server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.smtpd import Fault, SMTPServer, SMTPServers, threaded_smtp_servers

__all__ = ["threaded_smtp_servers"]  # the fixture, imported to be found by pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = ROOT / "run.py"
SENDER = "guide@recovery.example"
TO = "someone@example.org"
PUBLIC_URL = "https://guide.example.org"
USER, PASSWORD = "guide-sender", "S3cret-smtp-pa55word"
TOKEN = r"[A-Za-z0-9_.\-]+"


def write_config(tmp_path: Path, **settings: Any) -> Path:
    """A config file whose state lives in tmp_path; `settings` are top-level sections."""
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "lessons": {"dir": str(ROOT / "lessons")},
        "sender": {"address": SENDER},
        "web": {"public_url": PUBLIC_URL},
        **settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def smtp_settings(server: SMTPServer, **changes: Any) -> dict[str, Any]:
    """The `transport` and `smtp` sections pointing at `server`."""
    return {
        "transport": "smtp",
        "smtp": {"host": server.host, "port": server.port, "timeout": 10, **changes},
    }


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run run.py in a child process from tmp_path; exit status and stdout + stderr."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DRG_") and key != "CREDENTIALS_DIRECTORY"
    }
    # No __pycache__ written into the repository by the child.
    clean |= {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(RUN_PY), "--config", str(config), *args],
        cwd=config.parent,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def check_lesson_email(raw: bytes, *, to: str = TO) -> EmailMessage:
    """Assert everything DESIGN.md's 'Every email' asks of a day-1 lesson; the parsed message."""
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)  # CRLF only
    assert max(len(line) for line in lines) <= 998  # RFC 5322 line limit
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert not message.defects

    for name in (
        "Message-ID",
        "Date",
        "From",
        "To",
        "Subject",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Auto-Submitted",
        "MIME-Version",
    ):
        assert len(message.get_all(name, [])) == 1, name
    assert re.fullmatch(r"<[^<>@\s]+@recovery\.example>", str(message["Message-ID"]))
    assert message["Date"].datetime is not None
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["To"].addresses == (Address(addr_spec=to),)
    assert str(message["Subject"]).strip()
    assert str(message["List-Id"]).endswith("<no-contact.recovery.example>")
    unsubscribe = re.fullmatch(
        rf"<(https?://[^>\s]+/unsubscribe/{TOKEN})>(, <mailto:[^>\s]+>)?",
        str(message["List-Unsubscribe"]),
    )
    assert unsubscribe is not None
    unsubscribe_url = unsubscribe.group(1)
    assert unsubscribe_url.startswith(PUBLIC_URL + "/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "7bit")
    text, html = (part.get_content() for part in parts)
    assert isinstance(text, str)
    assert isinstance(html, str)
    manage = re.search(rf"{re.escape(PUBLIC_URL)}/manage/{TOKEN}", text)
    assert manage is not None
    for body in (text, html):
        assert "Day 1 of 30" in body
        assert unsubscribe_url in body
        assert manage.group(0) in body
        assert "Pause" in body
        assert "National Domestic Violence Hotline" in body
        assert "educational" in body
        assert "not a substitute" in body
    assert "<img" not in html.lower()  # no tracking pixels or remote images
    return message


def test_send_test_over_smtp(tmp_path: Path, threaded_smtp_servers: SMTPServers) -> None:
    with threaded_smtp_servers.threaded() as server:
        config = write_config(tmp_path, **smtp_settings(server))
        status, output = run_cli(config, "send-test", "1", "--to", TO)

    assert status == 0, output
    assert "delivered" in output
    assert len(server.messages) == 1
    received = server.messages[0]
    assert (received.mail_from, received.rcpt_tos) == (SENDER, (TO,))
    check_lesson_email(received.data)
    assert list((tmp_path / "state").glob("outbox/new/*")) == []


def test_send_test_into_the_default_maildir(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    status, output = run_cli(config, "send-test", "1", "--to", TO)

    assert status == 0, output
    assert "via maildir: delivered" in output
    outbox = tmp_path / "state" / "outbox"
    files = list((outbox / "new").iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".eml"
    assert list((outbox / "tmp").iterdir()) == []
    check_lesson_email(files[0].read_bytes())


def test_bad_port_is_reported_without_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, transport="smtp", smtp={"port": 99999})
    status, output = run_cli(config, "send-test", "1", "--to", TO)

    assert status == 2
    assert "smtp.port: must be an integer from 1 to 65535" in output
    assert "Traceback" not in output
    assert not (tmp_path / "state").exists()


def test_refused_recipient_fails_with_the_reply(
    tmp_path: Path, threaded_smtp_servers: SMTPServers
) -> None:
    with threaded_smtp_servers.threaded() as server:
        server.script(Fault.reply_at("RCPT", "550 5.1.1 No such user"))
        config = write_config(tmp_path, **smtp_settings(server))
        status, output = run_cli(config, "send-test", "1", "--to", TO)

    assert status == 1
    assert "550 5.1.1 No such user" in output
    assert "Traceback" not in output
    assert server.messages == []


def test_unusable_address_fails_without_a_traceback(
    tmp_path: Path, threaded_smtp_servers: SMTPServers
) -> None:
    with threaded_smtp_servers.threaded() as server:
        config = write_config(tmp_path, **smtp_settings(server))
        status, output = run_cli(config, "send-test", "1", "--to", "some one@example.org")

    # The one address validator refuses it before any connection is made.
    assert status == 2
    assert "error: --to: 'some one@example.org' is not an email address" in output
    assert "Traceback" not in output
    assert server.handler.verbs() == []  # refused before anything was sent


@pytest.mark.parametrize("password", [PASSWORD, "Wr0ng-smtp-pa55word"])
def test_smtp_password_never_appears_in_the_output(
    tmp_path: Path, threaded_smtp_servers: SMTPServers, password: str
) -> None:
    with threaded_smtp_servers.threaded(starttls=True, credentials=(USER, PASSWORD)) as server:
        assert server.tls is not None
        settings = smtp_settings(server, username=USER, ca_file=str(server.tls.ca_file))
        config = write_config(tmp_path, log_level="DEBUG", **settings)
        status, output = run_cli(
            config, "send-test", "1", "--to", TO, env={"DRG_SMTP_PASSWORD": password}
        )

    assert password not in output
    assert server.handler.auth_attempts  # the password was really used
    if password == PASSWORD:
        assert status == 0, output
        assert [(m.login, m.tls) for m in server.messages] == [(USER, True)]
    else:
        assert status == 1
        assert "smtp.username" in output
        assert "Traceback" not in output
        assert server.messages == []
