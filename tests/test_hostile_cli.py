"""Hostile and careless command lines (issue 12): one clear line, its own exit status, no change.

Every command runs as a subprocess, as an operator runs it, against a state folder (SQLite
database with one subscriber, maildir outbox) that must stay byte-for-byte as it was.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.smtpd import SMTPServers, threaded_smtp_servers
from tests.statecheck import unchanged
from tests.test_hostile_lessons import lesson, write_library

__all__ = ["threaded_smtp_servers"]  # the fixture, imported to be found by pytest

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBER = "reader@example.org"
NOT_AN_ADDRESS = "must not contain @, < or > or =? (it must not look like an email address)"
ENCODED_WORD = "=?utf-8?q?evil=40attacker.example?="
OUT_OF_RANGE = "is outside 2000-01-01 to 2099-12-31"
DUE = "2027-03-01T09:00Z"  # the subscriber's first send time (08:00 in Berlin) has passed


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """run.py in a child process from the config's folder: status, stdout, stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRG_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), *args],
        cwd=config.parent,
        env={**clean, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def write_config(folder: Path, **settings: Any) -> Path:
    """config.yaml in `folder`: state and lessons beside it, `settings` as top-level sections."""
    data = {
        "state_dir": str(folder / "state"),
        "lessons": {"dir": str(folder / "lessons"), "default_sequence": "demo"},
        "sender": {"address": "guide@recovery.example"},
        **settings,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with lessons, a config and a state holding one active subscriber."""
    folder = tmp_path_factory.mktemp("hostile")
    write_library(folder, {"alpha": lesson("alpha"), "beta": lesson("beta")})
    config = write_config(folder)
    status, out, err = run(
        config, "subscribers", "add", SUBSCRIBER, "--timezone", "Europe/Berlin", "--at", "08:00"
    )
    assert status == 0, out + err
    (folder / "state" / "outbox" / "new").mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def site(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared folder; its config.yaml."""
    copy = tmp_path / "site"
    shutil.copytree(prepared, copy, symlinks=True)
    config = copy / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(str(prepared), str(copy)), encoding="utf-8"
    )
    return config


def usage_error(text: str) -> str:
    """The last line click prints for a bad option value."""
    return f"Error: Invalid value for '--now': {text}"


# (arguments, exit status, the last line on stderr)
BAD_COMMANDS: list[tuple[list[str], int, str]] = [
    # Dates and times: bounded, never an OverflowError.
    (["tick", "--now", "9999-12-31T23:59Z"], 2, usage_error(f"'9999-12-31T23:59Z' {OUT_OF_RANGE}")),
    (
        ["tick", "--now", "0001-01-01T00:00+01:00"],
        2,
        usage_error(f"'0001-01-01T00:00+01:00' {OUT_OF_RANGE}"),
    ),
    (["tick", "--now", "1999-12-31T23:59Z"], 2, usage_error(f"'1999-12-31T23:59Z' {OUT_OF_RANGE}")),
    (
        ["tick", "--dry-run", "--now", "2100-01-01T00:00Z"],
        2,
        usage_error(f"'2100-01-01T00:00Z' {OUT_OF_RANGE}"),
    ),
    (
        ["status", "--now", "2100-01-01T00:00Z"],
        2,
        usage_error(f"'2100-01-01T00:00Z' {OUT_OF_RANGE}"),
    ),
    (
        ["tick", "--now", "2027-13-01T00:00Z"],
        2,
        usage_error("'2027-13-01T00:00Z' is not an ISO 8601 time"),
    ),
    (
        ["tick", "--now", "2027-03-01T08:00"],
        2,
        usage_error(
            "'2027-03-01T08:00' needs a UTC offset, e.g. 2027-03-01T08:00+00:00 or "
            "2027-03-01T08:00Z"
        ),
    ),
    (
        ["subscribers", "add", "new@example.org", "--at", "24:00"],
        1,
        "error: send_time: '24:00' is not a 24-hour time HH:MM (for example 08:30)",
    ),
    (
        ["subscribers", "add", "new@example.org", "--at", "\u0660\u0669:\u0660\u0665"],
        1,
        "error: send_time: '٠٩:٠٥' is not a 24-hour time HH:MM (for example 08:30)",
    ),
    (
        ["subscribers", "add", "new@example.org", "--timezone", "Mars/Olympus_Mons"],
        1,
        "error: timezone: 'Mars/Olympus_Mons' is not an IANA timezone (for example Europe/Berlin)",
    ),
    # Addresses: one validator, whatever the command.
    (
        ["send-test", "1", "--to", "not an address"],
        2,
        "error: --to: 'not an address' is not an email address",
    ),
    (
        ["send-test", "1", "--to", "a@example.org, b@example.net"],
        2,
        "error: --to: 'a@example.org, b@example.net' is not an email address",
    ),
    (
        ["send-test", "1", "--to", "a@example.org\nBcc: b@example.net"],
        2,
        "error: --to: 'a@example.org\\nBcc: b@example.net' is not an email address",
    ),
    (["send-test", "1", "--to", ""], 2, "error: --to: '' is not an email address"),
    (
        ["send-test", "1", "--to", "Sam <sam@example.org>"],
        2,
        "error: --to: 'Sam <sam@example.org>' is not an email address",
    ),
    (
        ["subscribers", "add", "a@example.org;b@example.org"],
        1,
        "error: email: 'a@example.org;b@example.org' is not an email address",
    ),
    (
        ["subscribers", "add", "someone@localhost"],
        1,
        "error: email: 'someone@localhost' is not an email address",
    ),
    # Display names that could spell another address.
    (
        ["send-test", "1", "--to", SUBSCRIBER, "--name", ENCODED_WORD],
        2,
        f"error: --name: {NOT_AN_ADDRESS}",
    ),
    (
        ["subscribers", "add", "new@example.org", "--name", ENCODED_WORD],
        1,
        f"error: name: {NOT_AN_ADDRESS}",
    ),
    (
        ["subscribers", "add", "new@example.org", "--name", "evil@attacker.example"],
        1,
        f"error: name: {NOT_AN_ADDRESS}",
    ),
    (
        ["subscribers", "add", "new@example.org", "--name", "evil\uff20attacker.example"],
        1,
        f"error: name: {NOT_AN_ADDRESS}",
    ),
    (
        ["subscribers", "add", "new@example.org", "--name", "Sam <sam@attacker.example>"],
        1,
        f"error: name: {NOT_AN_ADDRESS}",
    ),
    (
        [
            "subscribers",
            "add",
            "new@example.org",
            "--name",
            "=?utf-8?b?ZXZpbEBhdHRhY2tlci5leGFtcGxl?=",
        ],
        1,
        f"error: name: {NOT_AN_ADDRESS}",
    ),
    # Days out of the sequence.
    (["send-test", "0", "--to", SUBSCRIBER], 2, "day must be from 1 to 2"),
    (["send-test", "3", "--to", SUBSCRIBER], 2, "day must be from 1 to 2"),
    (["lessons", "preview", "9"], 2, "day must be from 1 to 2"),
]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    BAD_COMMANDS,
    ids=[" ".join(args)[:60] for args, _, _ in BAD_COMMANDS],
)
def test_a_bad_argument_is_one_clear_line_and_changes_nothing(
    site: Path, args: list[str], status: int, message: str
) -> None:
    with unchanged(site.parent / "state", site.parent / "lessons"):
        result = run(site, *args)
    assert "Traceback" not in result[1] + result[2]
    assert (result[0], result[2].splitlines()[-1]) == (status, message), result


def test_a_csv_import_checks_every_address_and_name_with_the_same_rules(site: Path) -> None:
    rows = [
        "email,name,timezone,send_time",
        "good@example.org,Sam,Europe/Berlin,08:00",
        "a@example.org, b@example.org,Ann,UTC,08:00",
        f"c@example.org,{ENCODED_WORD},UTC,08:00",
        "d@example.org,Dee <dee@attacker.example>,UTC,08:00",
        "not an address,Eve,UTC,08:00",
        "f@example.org,Fay,UTC,8 am",
    ]
    people = site.parent / "people.csv"
    people.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with unchanged(site.parent / "state"):
        status, out, err = run(site, "subscribers", "import", str(people), "--strict")
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        f"{people}:3: row: has more cells than the header",
        f"{people}:4: name: {NOT_AN_ADDRESS}",
        f"{people}:5: name: {NOT_AN_ADDRESS}",
        f"{people}:6: email: 'not an address' is not an email address",
        f"{people}:7: send_time: '8 am' is not a 24-hour time HH:MM (for example 08:30)",
        "5 bad row(s); --strict: nothing imported",
    ]


def write_latin1(path: Path) -> None:
    """A spreadsheet's export in Latin-1, not UTF-8."""
    path.write_bytes(
        "email,name,timezone,send_time\nz@example.org,Zo\xeb,UTC,08:00\n".encode("latin-1")
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (write_latin1, "not UTF-8 text (byte 0xeb)"),
        (Path.mkdir, "Is a directory"),
        (os.mkfifo, "not a regular file"),  # reading it would wait forever
        (lambda path: None, "No such file or directory"),
    ],
    ids=["latin-1", "folder", "fifo", "missing"],
)
def test_an_import_file_that_cannot_be_read_is_one_line(
    site: Path, make: Any, message: str
) -> None:
    people = site.parent / "people.csv"
    make(people)
    with unchanged(site.parent / "state"):
        status, out, err = run(site, "subscribers", "import", str(people))
    assert (status, out, err) == (1, "", f"error: cannot read {people}: {message}\n")


def test_a_configuration_error_is_exit_status_2(site: Path) -> None:
    config = write_config(site.parent, smtp={"port": 70000})
    with unchanged(site.parent / "state"):
        status, out, err = run(config, "tick", "--now", DUE)
    assert (status, out) == (2, "")
    assert err.startswith("configuration error: ") and "smtp.port" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_relay_that_halts_sending_is_exit_status_3(
    site: Path, threaded_smtp_servers: SMTPServers
) -> None:
    with threaded_smtp_servers.threaded(starttls=True, credentials=("guide", "right")) as server:
        assert server.tls is not None
        smtp = {
            "host": server.host,
            "port": server.port,
            "timeout": 10,
            "username": "guide",
            "ca_file": str(server.tls.ca_file),
        }
        # In this process, so the pass itself sees the refusal (the sender child is tested
        # in test_process_transport.py).
        dispatch = {"sender_process": False}
        config = write_config(site.parent, transport="smtp", smtp=smtp, dispatch=dispatch)
        status, out, err = run(config, "tick", "--now", DUE, env={"DRG_SMTP_PASSWORD": "wrong"})
    assert status == 3, out + err
    assert out.startswith("claimed 1: nothing due (halted: smtp.username: ")
    assert server.messages == [] and "Traceback" not in out + err


def test_a_subscriber_whose_message_cannot_be_prepared_is_exit_status_4(site: Path) -> None:
    # An address stored before today's checks (or edited by hand) that no header may carry:
    # the pass logs it and goes on, and cron must see that someone got nothing.
    database = site.parent / "state" / "guide.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE subscribers SET email = 'reader@example.org' || char(10) || 'Bcc: x@y.org'"
        )
    db.close()
    outbox = site.parent / "state" / "outbox"
    with unchanged(outbox):
        status, out, err = run(site, "tick", "--now", DUE)
    assert status == 4, out + err
    assert out == "claimed 1: nothing due\n"
    assert err.splitlines()[-1] == "1 claimed subscriber(s) got no outcome; see the log"


def test_a_good_tick_is_exit_status_0_and_sends(site: Path) -> None:
    # The statuses above are told apart from this one, not from any failure.
    status, out, err = run(site, "tick", "--now", DUE)
    assert (status, out) == (0, "claimed 1: sent 1\n"), err
    assert len(list((site.parent / "state" / "outbox" / "new").iterdir())) == 1
