"""Operator configuration: load config.yaml, validate every key, resolve secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from guide.config_reader import (
    Section,
    as_boolean,
    as_string,
    choice,
    email_address,
    http_url,
    int_range,
    number_range,
    plain_text,
    read_secret,
)
from guide.errors import ConfigError
from guide.yamlsrc import Mapping, SourceList, YAMLSyntaxError, load_yaml

TRANSPORTS = ("maildir", "smtp", "memory")
SMTP_SECURITY = ("starttls", "tls", "none", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class SMTPConfig:
    """How to reach the relay."""

    host: str = "localhost"
    port: int = 25
    security: str = "auto"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    verify_certificates: bool = True
    ca_file: str = ""
    local_hostname: str = ""


@dataclass(frozen=True)
class SenderConfig:
    """Who the mail is from, in normal and in discreet mode."""

    address: str = "guide@localhost"
    name: str = "Daily Recovery Guide"
    discreet_name: str = "Daily Notes"
    discreet_subject: str = "Your note for today"
    reply_to: str = ""

    @property
    def domain(self) -> str:
        """The domain of the sender address, used for Message-IDs and List-Id."""
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class CrisisResource:
    """One line of the crisis resources shown in every email's footer."""

    name: str
    contact: str
    url: str = ""


DEFAULT_CRISIS_RESOURCES = (
    CrisisResource(
        name="National Domestic Violence Hotline (US)",
        contact="call 1-800-799-7233 or text START to 88788, any hour",
        url="https://www.thehotline.org",
    ),
)


@dataclass(frozen=True)
class FooterConfig:
    """Safety text every email carries."""

    crisis_resources: tuple[CrisisResource, ...] = DEFAULT_CRISIS_RESOURCES
    emergency: str = (
        "If you are in danger right now, call 911 in the US or your local emergency number."
    )
    disclaimer: str = (
        "This guide is educational. It is not a substitute for care from a licensed clinician "
        "or advocate."
    )


@dataclass(frozen=True)
class DispatchConfig:
    """How the daily loop claims, sends and records."""

    interval_seconds: int = 30
    batch_size: int = 500
    connections: int = 4
    lease_seconds: int = 600
    commit_every: int = 200
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    retry_lifetime: timedelta = timedelta(days=5)
    shutdown_grace_seconds: float = 30.0
    closing_email: bool = True
    sender_process: bool = True


@dataclass(frozen=True)
class WebConfig:
    """Where the subscriber pages listen and the base URL links in emails use."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    enabled: bool = True
    quick_exit_url: str = "https://www.bbc.com/weather"
    pending_days: int = 7
    client_limit_per_hour: int = 20
    address_limit_per_day: int = 3
    trust_forwarded_for: bool = False


@dataclass(frozen=True)
class DKIMConfig:
    """DKIM signing; off unless a selector, domain and key are configured."""

    selector: str = ""
    domain: str = ""
    private_key: bytes = field(default=b"", repr=False)

    @property
    def enabled(self) -> bool:
        """Whether messages are signed."""
        return bool(self.selector and self.domain and self.private_key)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path | None = None
    state_dir: Path = Path("state")
    database_url: str = ""
    lessons_dir: Path = Path("lessons")
    default_sequence: str = "no-contact"
    transport: str = "maildir"
    maildir_path: Path = Path("state/outbox")
    smtp: SMTPConfig = SMTPConfig()
    sender: SenderConfig = SenderConfig()
    unsubscribe_mailto: str = ""
    footer: FooterConfig = FooterConfig()
    dispatch: DispatchConfig = DispatchConfig()
    web: WebConfig = WebConfig()
    dkim: DKIMConfig = DKIMConfig()
    link_secret: str = field(default="", repr=False)
    link_lifetime: timedelta = timedelta(days=30)
    log_level: str = "INFO"

    @property
    def sqlite_path(self) -> Path:
        """The embedded database file used when no database URL is configured."""
        return self.state_dir / "guide.sqlite3"


def load_config(path: Path | None, env: AbstractMapping[str, str] | None = None) -> Config:
    """Read and validate `path`; absent keys get defaults; ConfigError names a bad key."""
    env = os.environ if env is None else env
    if path is None:
        return _build(Mapping(), Path.cwd(), "(defaults)", env, None)
    try:
        data = load_yaml(path)
    except FileNotFoundError as err:
        raise ConfigError("--config", f"no such file: {path}") from err
    except YAMLSyntaxError as err:
        raise ConfigError(
            "(syntax)", err.message, source=f"{path}:{err.line}:{err.column}"
        ) from err
    return _build(data, path.resolve().parent, str(path), env, path)


def _build(
    data: Any, base: Path, source: str, env: AbstractMapping[str, str], path: Path | None
) -> Config:
    top = Section(data, "", source)
    d = Config()

    def relative(value: str) -> Path:
        return base / Path(value).expanduser()

    state_dir = relative(top.get("state_dir", "state", as_string, "must be a folder path"))
    database = top.section("database")
    database_url = database.get("url", "", as_string, "must be a SQLAlchemy URL or empty")
    password_file = database.get("password_file", "", as_string, "must be a file path")
    if database_url:
        database_url = _database_url(database, database_url, env, password_file, base, source)
    database.finish()

    lessons = top.section("lessons")
    lessons_dir = relative(lessons.get("dir", "lessons", as_string, "must be a folder path"))
    default_sequence = lessons.get(
        "default_sequence", d.default_sequence, as_string, "must be a sequence id"
    )
    lessons.finish()

    transport = top.get(
        "transport", d.transport, choice(TRANSPORTS), f"must be one of {', '.join(TRANSPORTS)}"
    )
    maildir = top.section("maildir")
    maildir_value = maildir.get("path", "", as_string, "must be a folder path")
    maildir.finish()
    maildir_path = relative(maildir_value) if maildir_value else state_dir / "outbox"

    smtp_section = top.section("smtp")
    s = SMTPConfig()
    username = smtp_section.get("username", "", as_string, "must be a string")
    password_file = smtp_section.get("password_file", "", as_string, "must be a file path")
    smtp = SMTPConfig(
        host=smtp_section.get("host", s.host, as_string, "must be a host name"),
        port=smtp_section.get(
            "port", s.port, int_range(1, 65535), "must be an integer from 1 to 65535"
        ),
        security=smtp_section.get(
            "security",
            s.security,
            choice(SMTP_SECURITY),
            f"must be one of {', '.join(SMTP_SECURITY)}",
        ),
        username=username,
        password=read_secret(
            "smtp_password",
            env=env,
            file_value=password_file,
            file_key="smtp.password_file",
            base=base,
            source=smtp_section.where("password_file"),
        ),
        timeout=smtp_section.get(
            "timeout", s.timeout, number_range(1, 600), "must be seconds from 1 to 600"
        ),
        verify_certificates=smtp_section.get(
            "verify_certificates", True, as_boolean, "must be true or false"
        ),
        ca_file=smtp_section.get("ca_file", "", as_string, "must be a file path"),
        local_hostname=smtp_section.get("local_hostname", "", as_string, "must be a host name"),
    )
    if "password" in smtp_section.data:
        raise smtp_section.error(
            "password",
            "secrets do not belong in config.yaml: set $DRG_SMTP_PASSWORD or smtp.password_file",
        )
    smtp_section.finish()

    sender_section = top.section("sender")
    sd = SenderConfig()
    sender = SenderConfig(
        address=sender_section.get("address", sd.address, email_address, "must be an email address")
        or _missing(sender_section, "address"),
        name=sender_section.get("name", sd.name, plain_text, "must be one line of text"),
        discreet_name=sender_section.get(
            "discreet_name", sd.discreet_name, plain_text, "must be one line of text"
        ),
        discreet_subject=sender_section.get(
            "discreet_subject", sd.discreet_subject, plain_text, "must be one line of text"
        ),
        reply_to=sender_section.get("reply_to", "", email_address, "must be an email address"),
    )
    sender_section.finish()
    unsubscribe_mailto = top.get(
        "unsubscribe_mailto", "", email_address, "must be an email address"
    )

    footer_section = top.section("footer")
    fd = FooterConfig()
    resources = fd.crisis_resources
    raw = footer_section.get("crisis_resources", None, lambda v: v, "")
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            raise footer_section.error("crisis_resources", "must be a non-empty list")
        parsed = []
        for index, item in enumerate(raw):
            line = raw.item_lines[index] if isinstance(raw, SourceList) else 1
            entry = Section(item, footer_section.key(f"crisis_resources[{index}]"), source, line)
            parsed.append(
                CrisisResource(
                    name=entry.get("name", "", plain_text, "must be one line of text")
                    or _missing(entry, "name"),
                    contact=entry.get("contact", "", plain_text, "must be one line of text")
                    or _missing(entry, "contact"),
                    url=entry.get("url", "", http_url, "must be an http(s) URL"),
                )
            )
            entry.finish()
        resources = tuple(parsed)
    footer = FooterConfig(
        crisis_resources=resources,
        emergency=footer_section.get(
            "emergency", fd.emergency, plain_text, "must be one line of text"
        ),
        disclaimer=footer_section.get(
            "disclaimer", fd.disclaimer, plain_text, "must be one line of text"
        ),
    )
    footer_section.finish()

    dispatch_section = top.section("dispatch")
    dd = DispatchConfig()
    dispatch = DispatchConfig(
        interval_seconds=dispatch_section.get(
            "interval_seconds",
            dd.interval_seconds,
            int_range(1, 3600),
            "must be seconds from 1 to 3600",
        ),
        batch_size=dispatch_section.get(
            "batch_size",
            dd.batch_size,
            int_range(1, 100_000),
            "must be an integer from 1 to 100000",
        ),
        connections=dispatch_section.get(
            "connections", dd.connections, int_range(1, 64), "must be an integer from 1 to 64"
        ),
        lease_seconds=dispatch_section.get(
            "lease_seconds",
            dd.lease_seconds,
            int_range(30, 86_400),
            "must be seconds from 30 to 86400",
        ),
        commit_every=dispatch_section.get(
            "commit_every",
            dd.commit_every,
            int_range(1, 10_000),
            "must be an integer from 1 to 10000",
        ),
        rate_per_second=dispatch_section.get(
            "rate_per_second",
            dd.rate_per_second,
            number_range(0, 100_000),
            "must be a number from 0 (no limit) to 100000",
        ),
        rate_per_hour=dispatch_section.get(
            "rate_per_hour",
            dd.rate_per_hour,
            int_range(0, 100_000_000),
            "must be an integer, 0 for no limit",
        ),
        retry_lifetime=timedelta(
            days=dispatch_section.get(
                "retry_lifetime_days", 5.0, number_range(0.01, 60), "must be days from 0.01 to 60"
            )
        ),
        shutdown_grace_seconds=dispatch_section.get(
            "shutdown_grace_seconds",
            dd.shutdown_grace_seconds,
            number_range(0, 600),
            "must be seconds from 0 to 600",
        ),
        closing_email=dispatch_section.get(
            "closing_email", dd.closing_email, as_boolean, "must be true or false"
        ),
        sender_process=dispatch_section.get(
            "sender_process", dd.sender_process, as_boolean, "must be true or false"
        ),
    )
    dispatch_section.finish()

    web_section = top.section("web")
    wd = WebConfig()
    web = WebConfig(
        host=web_section.get("host", wd.host, as_string, "must be an address to listen on"),
        port=web_section.get(
            "port", wd.port, int_range(1, 65535), "must be an integer from 1 to 65535"
        ),
        public_url=web_section.get(
            "public_url", wd.public_url, http_url, "must be an http(s) URL with no query"
        ),
        enabled=web_section.get("enabled", True, as_boolean, "must be true or false"),
        quick_exit_url=web_section.get(
            "quick_exit_url", wd.quick_exit_url, http_url, "must be an http(s) URL"
        ),
        pending_days=web_section.get(
            "pending_days", wd.pending_days, int_range(1, 90), "must be days from 1 to 90"
        ),
        client_limit_per_hour=web_section.get(
            "client_limit_per_hour",
            wd.client_limit_per_hour,
            int_range(1, 100_000),
            "must be an integer from 1 to 100000",
        ),
        address_limit_per_day=web_section.get(
            "address_limit_per_day",
            wd.address_limit_per_day,
            int_range(1, 100),
            "must be an integer from 1 to 100",
        ),
        trust_forwarded_for=web_section.get(
            "trust_forwarded_for", False, as_boolean, "must be true or false"
        ),
    )
    web_section.finish()

    links = top.section("links")
    secret_file = links.get("secret_file", "", as_string, "must be a file path")
    link_days = links.get("lifetime_days", 30, int_range(1, 3650), "must be days from 1 to 3650")
    links.finish()

    dkim_section = top.section("dkim")
    key_file = dkim_section.get("private_key_file", "", as_string, "must be a file path")
    dkim = DKIMConfig(
        selector=dkim_section.get("selector", "", as_string, "must be a DNS label"),
        domain=dkim_section.get("domain", "", as_string, "must be a domain"),
        private_key=read_secret(
            "dkim_private_key",
            env=env,
            file_value=key_file,
            file_key="dkim.private_key_file",
            base=base,
            source=dkim_section.where("private_key_file"),
        ).encode(),
    )
    if (dkim.selector or dkim.domain) and not dkim.enabled:
        raise dkim_section.error(
            "private_key_file",
            "DKIM needs selector, domain and a key ($DRG_DKIM_PRIVATE_KEY or this key)",
        )
    dkim_section.finish()

    log_level = top.get(
        "log_level", "INFO", choice(LOG_LEVELS), f"must be one of {', '.join(LOG_LEVELS)}"
    )
    top.finish()
    return Config(
        source=path,
        state_dir=state_dir,
        database_url=database_url,
        lessons_dir=lessons_dir,
        default_sequence=default_sequence,
        transport=transport,
        maildir_path=maildir_path,
        smtp=smtp,
        sender=sender,
        unsubscribe_mailto=unsubscribe_mailto,
        footer=footer,
        dispatch=dispatch,
        web=web,
        dkim=dkim,
        link_secret=read_secret(
            "link_secret",
            env=env,
            file_value=secret_file,
            file_key="links.secret_file",
            base=base,
            source=links.where("secret_file"),
        ),
        link_lifetime=timedelta(days=link_days),
        log_level=log_level,
    )


def _database_url(
    section: Section,
    url: str,
    env: AbstractMapping[str, str],
    password_file: str,
    base: Path,
    source: str,
) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise section.error("url", "must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise section.error("url", "is not a valid database URL") from err
    if parsed.password:
        raise section.error(
            "url",
            "secrets do not belong in config.yaml: use $DRG_DATABASE_PASSWORD or password_file",
        )
    password = read_secret(
        "database_password",
        env=env,
        file_value=password_file,
        file_key="database.password_file",
        base=base,
        source=source,
    )
    return parsed.set(password=password).render_as_string(hide_password=False) if password else url


def _missing(section: Section, name: str) -> str:
    raise section.error(name, "is required")
