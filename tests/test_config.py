"""Tests for guide.config: defaults, the shipped config.yaml, validation errors, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from guide.config import (
    Config,
    DispatchConfig,
    DispatchKeys,
    DKIMConfig,
    FooterConfig,
    LinksKeys,
    SenderConfig,
    SMTPConfig,
    WebConfig,
    load_config,
)
from guide.config_fields import plain
from guide.config_reader import fields_of
from guide.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config.yaml"
NO_ENV: dict[str, str] = {}


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    """Write `text` as a config file in `folder` and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    """The ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV if env is None else env)
    return info.value


# --- defaults -------------------------------------------------------------------------------


def test_no_file_gives_built_in_defaults() -> None:
    config = load_config(None, env=NO_ENV)
    assert config.source is None
    assert config.smtp == SMTPConfig()
    assert config.sender == SenderConfig()
    assert config.footer == FooterConfig()
    assert config.dispatch == DispatchConfig()
    assert config.web == WebConfig()
    assert config.dkim == DKIMConfig()
    assert config.transport == "maildir"
    assert config.log_level == "INFO"
    assert config.link_lifetime == timedelta(days=30)


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "smtp:\nsender:\ndispatch:\n", "transport: maildir\n"],
    ids=["empty", "comment", "empty-sections", "one-key"],
)
def test_absent_keys_get_defaults(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path, text)
    config = load_config(path, env=NO_ENV)
    assert config.source == path
    assert config.smtp == SMTPConfig()
    assert config.smtp.port == 25
    assert config.sender == SenderConfig()
    assert config.dispatch == DispatchConfig()
    assert config.web == WebConfig()
    assert config.footer == FooterConfig()
    assert config.transport == "maildir"
    assert config.database_url == ""
    assert config.default_sequence == "no-contact"
    # Relative paths are relative to the config file's folder, not the working directory.
    assert config.state_dir == tmp_path / "state"
    assert config.lessons_dir == tmp_path / "lessons"
    assert config.maildir_path == tmp_path / "state" / "outbox"
    assert config.sqlite_path == tmp_path / "state" / "guide.sqlite3"


def test_values_are_read_and_paths_resolved(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "state_dir: data\n"
        "transport: smtp\n"
        "smtp:\n"
        "  host: relay.example.org\n"
        "  port: 587\n"
        "  security: starttls\n"
        "  timeout: 12.5\n"
        "sender:\n"
        "  address: notes@example.org\n"
        "  name: Zoë’s Notes\n"
        "dispatch:\n"
        "  retry_lifetime_days: 2\n"
        "  closing_email: false\n"
        "web:\n"
        "  public_url: https://guide.example.org/\n"
        "footer:\n"
        "  countries:\n"
        "    - code: FR\n"
        "      name: France\n"
        '      emergency: "112"\n'
        "      lines:\n"
        "        - label: Local line\n"
        "          discreet_label: Support line\n"
        "          contact: call 123\n"
        "  default_country: FR\n",
    )
    config = load_config(path, env=NO_ENV)
    assert config.state_dir == tmp_path / "data"
    assert config.maildir_path == tmp_path / "data" / "outbox"
    assert config.transport == "smtp"
    assert (config.smtp.host, config.smtp.port, config.smtp.security) == (
        "relay.example.org",
        587,
        "starttls",
    )
    assert config.smtp.timeout == 12.5
    assert config.sender.address == "notes@example.org"
    assert config.sender.domain == "example.org"
    assert config.sender.name == "Zoë’s Notes"
    assert config.dispatch.retry_lifetime == timedelta(days=2)
    assert config.dispatch.closing_email is False
    assert config.web.public_url == "https://guide.example.org"
    assert [(c.code, c.name, c.emergency) for c in config.footer.countries] == [
        ("FR", "France", "112")
    ]
    assert [
        (x.label, x.discreet_label, x.contact, x.url) for x in config.footer.countries[0].lines
    ] == [("Local line", "Support line", "call 123", "")]


def test_shipped_config_equals_built_in_defaults() -> None:
    config = load_config(SHIPPED, env=NO_ENV)
    assert config.source == SHIPPED
    assert config.transport == "maildir"
    assert config.smtp.port == 25
    assert config.smtp == SMTPConfig()
    assert config.sender == SenderConfig()
    assert config.footer == FooterConfig()
    assert config.dispatch == DispatchConfig()
    assert config.web == WebConfig()
    assert config.dkim == DKIMConfig()
    assert config.database_url == ""
    assert config.default_sequence == Config().default_sequence
    assert config.log_level == Config().log_level
    assert config.link_lifetime == Config().link_lifetime
    assert config.unsubscribe_mailto == ""
    assert config.state_dir == REPO / "state"
    assert config.lessons_dir == REPO / "lessons"
    assert config.maildir_path == REPO / "state" / "outbox"


# --- validation errors: key path, problem, file:line ----------------------------------------

ERRORS = [
    # (config text, key path, line, message)
    ("smtp:\n  host: relay\n  port: 0\n", "smtp.port", 3, "must be an integer from 1 to 65535"),
    ("smtp:\n  port: 70000\n", "smtp.port", 2, "must be an integer from 1 to 65535"),
    ('smtp:\n  port: "25"\n', "smtp.port", 2, "must be an integer from 1 to 65535"),
    ("smtp:\n  port: true\n", "smtp.port", 2, "must be an integer from 1 to 65535"),
    ("smtp:\n  port: 25.5\n", "smtp.port", 2, "must be an integer from 1 to 65535"),
    ("web:\n  port: -1\n", "web.port", 2, "must be an integer from 1 to 65535"),
    ("log_level: INFO\nsmtp_host: relay\n", "smtp_host", 2, "unknown key"),
    ("smtp:\n  port: 25\n  hots: relay\n", "smtp.hots", 3, "unknown key"),
    (
        "footer:\n  international:\n    - label: A\n      discreet_label: B\n      contact: C\n"
        "      phone: 1\n",
        "footer.international[0].phone",
        6,
        "unknown key",
    ),
    ("state_dir: 5\n", "state_dir", 1, "must be a folder path"),
    ("smtp:\n  host: [a, b]\n", "smtp.host", 2, "must be a host name"),
    ("smtp:\n  timeout: '30'\n", "smtp.timeout", 2, "must be seconds from 1 to 600"),
    ("smtp:\n  timeout: 0.5\n", "smtp.timeout", 2, "must be seconds from 1 to 600"),
    ("dispatch:\n  rate_per_second: .nan\n", "dispatch.rate_per_second", 2, "must be a number"),
    ("dispatch:\n  closing_email: 'yes'\n", "dispatch.closing_email", 2, "must be true or false"),
    ("dispatch:\n  connections: 0\n", "dispatch.connections", 2, "must be an integer from 1"),
    ("links:\n  lifetime_days: 0\n", "links.lifetime_days", 2, "must be days from 1 to 3650"),
    ("transport: sendmail\n", "transport", 1, "must be one of maildir, smtp, memory"),
    ("smtp:\n  security: ssl\n", "smtp.security", 2, "must be one of starttls, tls, none, auto"),
    ("log_level: debug\n", "log_level", 1, "must be one of DEBUG, INFO, WARNING, ERROR"),
    ("sender:\n  address: not an address\n", "sender.address", 2, "must be an email address"),
    ('sender:\n  name: Daily\n  address: ""\n', "sender.address", 3, "is required"),
    ('sender:\n  name: "Daily\\nNotes"\n', "sender.name", 2, "must be one line of text"),
    ('sender:\n  name: "Daily\\u2028Notes"\n', "sender.name", 2, "must be one line of text"),
    ('sender:\n  discreet_name: "Notes\\x85"\n', "sender.discreet_name", 2, "must be one line"),
    ("unsubscribe_mailto: nobody\n", "unsubscribe_mailto", 1, "must be an email address"),
    ("web:\n  public_url: ftp://example.org\n", "web.public_url", 2, "must be an http(s) URL"),
    ("web:\n  public_url: https://e.org/?a=1\n", "web.public_url", 2, "must be an http(s) URL"),
    (
        'web:\n  public_url: "https://e.org/x\\r\\nBcc: evil@example.com"\n',
        "web.public_url",
        2,
        "must be an http(s) URL",
    ),
    ("database:\n  url: mysql://db/guide\n", "database.url", 2, "must start with sqlite+aiosqlite"),
    ("smtp: 5\n", "smtp", 1, "must be a mapping of keys"),
    ("log_level: INFO\nlessons:\n  - a\n", "lessons", 2, "must be a mapping of keys"),
    ("footer:\n  international: []\n", "footer.international", 2, "must be a non-empty list"),
    (
        "footer:\n  countries:\n    - just text\n",
        "footer.countries[0]",
        3,
        "must be a mapping of keys",
    ),
    (
        "footer:\n  international:\n    - label: Line\n      contact: call 1\n",
        "footer.international[0].discreet_label",
        3,
        "is required",
    ),
    (
        "footer:\n  international:\n    - label: A\n      discreet_label: B\n"
        "      contact: C\n      url: www.e.org\n",
        "footer.international[0].url",
        6,
        "must be an http(s) URL",
    ),
    (
        "footer:\n  countries:\n    - code: us\n      name: X\n      emergency: '1'\n",
        "footer.countries[0].code",
        3,
        "must be a two-letter country code in capitals (ISO 3166), such as US",
    ),
    (
        # Unquoted, YAML reads 000 as the number 0: the number must be quoted text.
        "footer:\n  countries:\n    - code: AU\n      name: X\n      emergency: 000\n",
        "footer.countries[0].emergency",
        5,
        'must be the emergency number as quoted text, such as "911" or "999 or 112"',
    ),
    (
        "footer:\n  countries:\n    - {code: US, name: A, emergency: '1'}\n"
        "    - {code: US, name: B, emergency: '1'}\n",
        "footer.countries",
        2,
        "must list each country once: US is there twice",
    ),
    (
        "footer:\n  countries:\n    - code: US\n      name: X\n      emergency: '1'\n"
        "      lines:\n        - label: A\n          discreet_label: B\n          contact: C\n"
        "          phone: 1\n",
        "footer.countries[0].lines[0].phone",
        10,
        "unknown key",
    ),
    ("footer:\n  default_country: FR\n", "footer", 1, "default_country FR is not in countries"),
    (
        "footer:\n  crisis_resources:\n    - name: A\n      contact: B\n",
        "footer.crisis_resources",
        2,
        "was replaced by footer.countries (lines per country) and footer.international",
    ),
    ("dkim:\n  selector: s1\n  domain: example.org\n", "dkim.private_key_file", 2, "DKIM needs"),
    ("- a\n- b\n", "(top level)", 1, "must be a mapping of keys"),
]


@pytest.mark.parametrize(("text", "key", "line", "message"), ERRORS)
def test_validation_error_names_key_problem_and_line(
    tmp_path: Path, text: str, key: str, line: int, message: str
) -> None:
    path = write_config(tmp_path, text)
    err = config_error(path)
    assert err.key == key
    assert err.message.startswith(message)
    assert err.source == f"{path}:{line}"
    assert str(err) == f"{path}:{line}: {key}: {err.message}"


def bounded_keys() -> list[tuple[str, str, Any]]:
    """(section, key, upper bound) of every number in config.yaml that has bounds."""
    sections = [
        ("smtp", SMTPConfig),
        ("dispatch", DispatchConfig),
        ("dispatch", DispatchKeys),
        ("web", WebConfig),
        ("links", LinksKeys),
    ]
    return [
        (section, name, bound.le)
        for section, owner in sections
        for name, info in fields_of(owner).items()
        for bound in plain(info).metadata
        if isinstance(bound, annotated_types.Le)
    ]


@pytest.mark.parametrize(("section", "key", "high"), bounded_keys())
def test_every_bound_is_enforced_and_named_in_its_message(
    tmp_path: Path, section: str, key: str, high: float
) -> None:
    path = write_config(tmp_path, f"{section}:\n  {key}: {high}\n")
    load_config(path, env=NO_ENV)
    write_config(tmp_path, f"{section}:\n  {key}: {high * 2}\n")
    err = config_error(path)
    assert (err.key, err.source) == (f"{section}.{key}", f"{path}:2")
    assert err.message.startswith("must be ")
    # Every upper bound is a whole number: the message shows it as written, 100000 not 1e+05.
    assert err.message.endswith(f" to {int(high)}")


def test_plain_password_in_yaml_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "smtp:\n  username: sam\n  password: hunter2-secret\n")
    err = config_error(path)
    assert err.key == "smtp.password"
    assert err.source == f"{path}:3"
    assert "DRG_SMTP_PASSWORD" in err.message
    assert "smtp.password_file" in err.message
    assert "hunter2-secret" not in str(err)


def test_plain_password_refused_even_when_env_has_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, "smtp:\n  password: hunter2-secret\n")
    err = config_error(path, env={"DRG_SMTP_PASSWORD": "from-env"})
    assert err.key == "smtp.password"


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ("smtp:\n  host: relay: x\n", 2, 14, "mapping values are not allowed here"),
        ("transport: maildir\nlog_level INFO\nsmtp:\n", 2, 1, "could not find expected ':'"),
        ('sender:\n  name: "Daily\nlog_level: INFO\n', 2, 9, "found unexpected end of stream"),
        ("smtp:\n  port: 25\n  port: 26\n", 3, 3, "duplicate key 'port'"),
    ],
    ids=["colon-in-value", "missing-colon", "unclosed-quote", "duplicate-key"],
)
def test_yaml_syntax_error_gives_line_and_column(
    tmp_path: Path, text: str, line: int, column: int, problem: str
) -> None:
    path = write_config(tmp_path, text)
    err = config_error(path)
    assert err.key == "(syntax)"
    assert err.source == f"{path}:{line}:{column}"
    assert str(err) == f"{path}:{line}:{column}: (syntax): {problem}"


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    err = config_error(tmp_path / "nope.yaml")
    assert err.key == "--config"
    assert "no such file" in err.message


# --- secrets ----------------------------------------------------------------------------------


@pytest.fixture
def secret_sources(tmp_path: Path) -> tuple[Path, Path]:
    """A config naming a password_file, and a credentials directory; both hold a password."""
    (tmp_path / "pw.txt").write_text("from-file\n", encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp_password").write_text("from-credentials\n", encoding="utf-8")
    return write_config(tmp_path, "smtp:\n  password_file: pw.txt\n"), credentials


def test_password_from_env_wins(secret_sources: tuple[Path, Path]) -> None:
    path, credentials = secret_sources
    env = {"DRG_SMTP_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(credentials)}
    assert load_config(path, env=env).smtp.password == "from-env"


def test_password_file_comes_next(secret_sources: tuple[Path, Path]) -> None:
    path, credentials = secret_sources
    env = {"DRG_SMTP_PASSWORD": "", "CREDENTIALS_DIRECTORY": str(credentials)}
    # Relative to the config file's folder (the tests run from the repository root).
    assert load_config(path, env=env).smtp.password == "from-file"


def test_password_from_credentials_directory_last(
    tmp_path: Path, secret_sources: tuple[Path, Path]
) -> None:
    _, credentials = secret_sources
    path = write_config(tmp_path, "smtp:\n  username: sam\n", name="other.yaml")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert load_config(path, env=env).smtp.password == "from-credentials"
    assert load_config(path, env=NO_ENV).smtp.password == ""


def test_password_not_in_repr(secret_sources: tuple[Path, Path]) -> None:
    path, _ = secret_sources
    env = {
        "DRG_SMTP_PASSWORD": "s3cr3t-smtp-value",
        "DRG_LINK_SECRET": "s3cr3t-link-value-rDEvvj4wuomh7-NRmg5jmpZ6W7BInB10vYF3pYqeP4c",
    }
    config = load_config(path, env=env)
    assert config.smtp.password == "s3cr3t-smtp-value"
    assert config.link_secret == "s3cr3t-link-value-rDEvvj4wuomh7-NRmg5jmpZ6W7BInB10vYF3pYqeP4c"
    for text in (repr(config), str(config), repr(config.smtp)):
        assert "s3cr3t" not in text


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_password_file_names_the_key(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        (tmp_path / "pw").mkdir()
    path = write_config(tmp_path, "smtp:\n  username: sam\n  password_file: pw\n")
    err = config_error(path)
    assert err.key == "smtp.password_file"
    assert err.message.startswith(f"cannot read {tmp_path / 'pw'}")
    assert str(err).startswith(f"{path}:3: smtp.password_file: cannot read")


def test_dkim_key_from_file(tmp_path: Path) -> None:
    # A real key: a key that does not parse is refused when the configuration is read.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    path = write_config(
        tmp_path,
        "dkim:\n  selector: s1\n  domain: example.org\n  private_key_file: dkim.pem\n",
    )
    config = load_config(path, env=NO_ENV)
    assert config.dkim.enabled
    assert config.dkim.private_key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert "BEGIN PRIVATE KEY" not in repr(config)


# --- the command line -------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DRG_") and key != "CREDENTIALS_DIRECTORY"
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp:\n  port: 0\n", ":2: smtp.port: must be an integer from 1 to 65535"),
        ("smtp:\n  host: a: b\n", ":2:10: (syntax): mapping values are not allowed here"),
        ("smtp:\n  password_file: missing.txt\n", ":2: smtp.password_file: cannot read"),
        (None, "--config: no such file"),
    ],
    ids=["bad-value", "syntax", "unreadable-secret", "missing-file"],
)
def test_cli_reports_config_error_without_traceback(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    if text is not None:
        bad.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--config", str(bad), "lessons", "check"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("configuration error:")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
