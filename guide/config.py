"""Operator configuration: each key's type, bounds and default, stated once; load_config."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping as AbstractMapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

from guide.admin_config import AdminConfig, AdminKeys
from guide.bounce_config import BounceConfig, BounceKeys
from guide.config_fields import (
    URL_LIMIT,
    Boolean,
    DNSName,
    Email,
    EmailOrEmpty,
    FileName,
    Folder,
    FolderPath,
    FromKey,
    FromSecret,
    HostName,
    HttpURL,
    Integer,
    Kind,
    Name,
    NotInFile,
    Number,
    Port,
    Subject,
    Unit,
    Word,
    ZeroMeans,
)
from guide.config_reader import ConfigFile, rule_error
from guide.crisis import FooterConfig as FooterConfig  # its home is crisis.py; kept here too
from guide.errors import ConfigError, YAMLSyntaxError
from guide.keys import dkim_key_problem, link_key_problem
from guide.text import ONE_LINE, is_one_line
from guide.yamlsrc import load_yaml

# Python callers get the same checks as config.yaml, so a test cannot build what a file can't.
_VALUES = ConfigDict(extra="forbid", allow_inf_nan=False)
SECONDS = Unit("seconds")
DAYS = Unit("days")
NO_LIMIT = ZeroMeans("no limit")
Text = Annotated[str, Strict()]
SMTPSecurity = Literal["starttls", "tls", "none", "auto"]


MAX_CONFIG_BYTES = 1024 * 1024  # config.yaml; the shipped one is about 8 KB


def one_line_secret(value: str) -> str | None:
    """Passwords travel in protocol lines (SMTP AUTH, the PostgreSQL startup): one line only."""
    return None if is_one_line(value) else f"the password {ONE_LINE}"


def dkim_secret(value: str) -> str | None:
    """Why a DKIM private key from a secret source cannot sign (None when it can)."""
    return dkim_key_problem(value.encode())


def _strong_or_generated(value: str) -> str:
    # Python callers (tests, benchmarks) meet the same rule as the secret sources; empty means
    # "generate one into state_dir".
    problem = link_key_problem(value) if value else None
    if problem:
        raise ValueError(problem)
    return value


def _usable_or_absent(value: bytes) -> bytes:
    problem = dkim_key_problem(value) if value else None
    if problem:
        raise ValueError(problem)
    return value


def days(count: float) -> timedelta:
    """A number of days from config.yaml as a timedelta."""
    return timedelta(days=count)


@dataclass(frozen=True, config=_VALUES)
class SMTPConfig:
    """How to reach the relay."""

    host: HostName = "localhost"
    port: Port = 25
    security: SMTPSecurity = "auto"
    username: Annotated[Word, Kind("one line of text")] = ""
    password: Annotated[str, FromSecret("smtp_password", "password_file", one_line_secret)] = Field(
        default="", repr=False
    )
    timeout: Annotated[Number, Field(ge=1, le=600), SECONDS] = 30.0
    verify_certificates: Boolean = True
    ca_file: FileName = ""
    local_hostname: HostName = ""


@dataclass(frozen=True, config=_VALUES)
class SenderConfig:
    """Who the mail is from, in normal and in discreet mode."""

    address: Email = "guide@localhost"
    name: Name = "Daily Recovery Guide"
    discreet_name: Name = "Daily Notes"
    discreet_subject: Subject = "Your note for today"
    reply_to: EmailOrEmpty = ""

    @property
    def domain(self) -> str:
        """The domain of the sender address, used for Message-IDs and List-Id."""
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, config=_VALUES)
class DispatchConfig:
    """How the daily loop claims, sends and records."""

    interval_seconds: Annotated[Integer, Field(ge=1, le=3600), SECONDS] = 30
    batch_size: Annotated[Integer, Field(ge=1, le=100_000)] = 500
    connections: Annotated[Integer, Field(ge=1, le=64)] = 4
    # Renewed every third of it while a node works: a dead node's claims pass on within it.
    lease_seconds: Annotated[Integer, Field(ge=5, le=86_400), SECONDS] = 60
    commit_every: Annotated[Integer, Field(ge=1, le=10_000)] = 200
    rate_per_second: Annotated[Number, Field(ge=0, le=100_000), NO_LIMIT] = 0.0
    rate_per_hour: Annotated[Integer, Field(ge=0, le=100_000_000), NO_LIMIT] = 0
    retry_lifetime: Annotated[timedelta, FromKey("retry_lifetime_days", days)] = timedelta(days=5)
    shutdown_grace_seconds: Annotated[Number, Field(ge=0, le=600), SECONDS] = 30.0
    closing_email: Boolean = True
    sender_process: Boolean = True
    # Every send failing this long (nothing delivered since the first failure): /healthz 503.
    relay_alert_seconds: Annotated[Integer, Field(ge=1, le=86_400), SECONDS] = 300


@dataclass(frozen=True, config=_VALUES)
class WebConfig:
    """Where the subscriber pages listen and the base URL links in emails use."""

    host: Annotated[HostName, Kind("an address to listen on")] = "127.0.0.1"
    port: Port = 8080
    public_url: Annotated[HttpURL, Kind("an http(s) URL with no query")] = "http://127.0.0.1:8080"
    enabled: Boolean = True
    quick_exit_url: HttpURL = "https://www.bbc.com/weather"
    pending_days: Annotated[Integer, Field(ge=1, le=90), DAYS] = 7
    client_limit_per_hour: Annotated[Integer, Field(ge=1, le=100_000)] = 20
    address_limit_per_day: Annotated[Integer, Field(ge=1, le=100)] = 3
    trust_forwarded_for: Boolean = False
    # For this audience privacy is the safer default: the sign-up form starts with it ticked.
    discreet_default: Boolean = True


@dataclass(frozen=True, config=_VALUES)
class DKIMConfig:
    """DKIM signing; off unless a selector, domain and key are configured."""

    selector: Annotated[DNSName, Kind("a DNS label")] = ""
    domain: Annotated[DNSName, Kind("a domain")] = ""
    private_key: Annotated[
        bytes,
        AfterValidator(_usable_or_absent),
        FromSecret("dkim_private_key", "private_key_file", dkim_secret),
    ] = Field(default=b"", repr=False)

    @property
    def enabled(self) -> bool:
        """Whether messages are signed."""
        return bool(self.selector and self.domain and self.private_key)


def _outbox(values: dict[str, Any]) -> Path:
    return Path(values["state_dir"]) / "outbox"


@dataclass(frozen=True, config=_VALUES)
class Config:
    """The whole validated configuration."""

    source: Annotated[Path | None, NotInFile()] = None
    state_dir: Folder = Path("state")
    database_url: Annotated[str, FromKey("database.url")] = ""
    lessons_dir: Annotated[Folder, FromKey("lessons.dir")] = Path("lessons")
    default_sequence: Annotated[Word, FromKey("lessons.default_sequence")] = "no-contact"
    transport: Literal["maildir", "smtp", "memory"] = "maildir"
    maildir_path: Annotated[Folder, FromKey("maildir.path")] = Field(default_factory=_outbox)
    smtp: SMTPConfig = SMTPConfig()
    sender: SenderConfig = SenderConfig()
    unsubscribe_mailto: EmailOrEmpty = ""
    footer: FooterConfig = FooterConfig()
    dispatch: DispatchConfig = DispatchConfig()
    web: WebConfig = WebConfig()
    dkim: DKIMConfig = DKIMConfig()
    bounces: BounceConfig = BounceConfig()
    admin: AdminConfig = AdminConfig()
    link_secret: Annotated[
        str,
        AfterValidator(_strong_or_generated),
        FromSecret("link_secret", "links.secret_file", link_key_problem),
    ] = Field(default="", repr=False)
    link_lifetime: Annotated[timedelta, FromKey("links.lifetime_days", days)] = timedelta(days=30)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def sqlite_path(self) -> Path:
        """The embedded database file used when no database URL is configured."""
        return self.state_dir / "guide.sqlite3"


# --- keys config.yaml holds under other names than Config's attributes -----------------------


class _Keys(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _database_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url:
        return url
    if not is_one_line(url) or " " in url:
        raise rule_error("must be a URL without spaces or control characters")
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise rule_error("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise rule_error("is not a valid database URL") from err
    if parsed.password:
        raise rule_error(
            "secrets do not belong in config.yaml: use $DRG_DATABASE_PASSWORD or password_file"
        )
    return url


DatabaseURL = Annotated[
    Text,
    Field(max_length=URL_LIMIT),
    AfterValidator(_database_url),
    Kind("a SQLAlchemy URL or empty"),
]


def _empty_is_absent(value: Any) -> Any:
    return None if value == "" else value


class DatabaseKeys(_Keys):
    """database: the URL (empty: SQLite in state_dir) and where its password is."""

    url: DatabaseURL | None = None
    password_file: FileName = ""


class LessonsKeys(_Keys):
    """lessons: the folder of sequences and the one new subscribers get."""

    dir: FolderPath | None = None
    default_sequence: Annotated[Word, Kind("a sequence id")] | None = None


class MaildirKeys(_Keys):
    """maildir: the outbox folder (empty: state_dir/outbox)."""

    path: Annotated[FolderPath | None, BeforeValidator(_empty_is_absent)] = None


class LinksKeys(_Keys):
    """links: the signing key's file and how long links stay valid."""

    secret_file: FileName = ""
    lifetime_days: Annotated[Integer, Field(ge=1, le=3650), DAYS] | None = None


class SMTPKeys(_Keys):
    """smtp: where the relay password is."""

    password_file: FileName = ""


class DispatchKeys(_Keys):
    """dispatch: how long to retry, in days."""

    retry_lifetime_days: Annotated[Number, Field(ge=0.01, le=60), DAYS] | None = None


class DKIMKeys(_Keys):
    """dkim: where the private key is."""

    private_key_file: FileName = ""


class FileKeys(_Keys):
    """Every key of config.yaml that is not an attribute of the classes above by its own name."""

    database: DatabaseKeys = DatabaseKeys()
    lessons: LessonsKeys = LessonsKeys()
    maildir: MaildirKeys = MaildirKeys()
    links: LinksKeys = LinksKeys()
    smtp: SMTPKeys = SMTPKeys()
    dispatch: DispatchKeys = DispatchKeys()
    dkim: DKIMKeys = DKIMKeys()
    bounces: BounceKeys = BounceKeys()
    admin: AdminKeys = AdminKeys()


def load_config(path: Path | None, env: AbstractMapping[str, str] | None = None) -> Config:
    """Read and validate `path`; absent keys get defaults; ConfigError names a bad key."""
    env = os.environ if env is None else env
    if path is None:
        return _load(ConfigFile(None, source="(defaults)", base=Path.cwd(), env=env), None)
    try:
        if path.is_dir():
            raise ConfigError("--config", f"{path} is a folder; name a file such as config.yaml")
        if path.exists() and not path.is_file():
            raise ConfigError("--config", f"{path} is not a regular file")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            message = f"{path} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MB"
            raise ConfigError("--config", message)
        data = load_yaml(path)
    except FileNotFoundError as err:
        raise ConfigError("--config", f"no such file: {path}") from err
    except OSError as err:
        raise ConfigError("--config", f"cannot read {path}: {err.strerror or err}") from err
    except YAMLSyntaxError as err:
        raise ConfigError(
            "(syntax)", err.message, source=f"{path}:{err.line}:{err.column}"
        ) from err
    return _load(ConfigFile(data, source=str(path), base=path.resolve().parent, env=env), path)


def _load(file: ConfigFile, path: Path | None) -> Config:
    config, keys = file.build(Config, FileKeys)
    if (config.dkim.selector or config.dkim.domain) and not config.dkim.enabled:
        raise file.error(
            "dkim.private_key_file",
            "DKIM needs selector, domain and a key ($DRG_DKIM_PRIVATE_KEY or this key)",
        )
    url = _with_password(file, config.database_url, keys.database.password_file)
    return dataclasses.replace(config, source=path, database_url=url)


def _with_password(file: ConfigFile, url: str, password_file: str) -> str:
    # The password joins the URL only in memory: it never sits in config.yaml.
    from sqlalchemy.engine import make_url

    if not url:
        return url
    password = file.secret(
        "database_password", password_file, "database.password_file", one_line_secret
    )
    if not password:
        return url
    return make_url(url).set(password=password).render_as_string(hide_password=False)
