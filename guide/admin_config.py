"""admin: where the admin pages listen, who may log in, and for how long (config.yaml section)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

from guide.config_fields import (
    Boolean,
    FileName,
    FromSecret,
    HostName,
    HttpURL,
    Integer,
    Kind,
    OneLine,
    Port,
    Unit,
)
from guide.passwords import hash_problem

_VALUES = ConfigDict(extra="forbid", allow_inf_nan=False)
# The audit trail's actor column holds 32 characters: "admin:" and the name must fit.
ACTOR_PREFIX = "admin:"
USERNAME_LIMIT = 32 - len(ACTOR_PREFIX)

Username = Annotated[
    OneLine,
    Field(min_length=1, max_length=USERNAME_LIMIT, pattern=r"^[a-z0-9][a-z0-9._-]*$"),
    Kind(f"a user name of lower-case letters, digits, '.', '_' or '-' (at most {USERNAME_LIMIT})"),
]


@dataclass(frozen=True, config=_VALUES)
class AdminConfig:
    """The admin pages: their own listen address, one login, a session lifetime."""

    enabled: Boolean = True
    # Its own address, so a proxy in front of the subscriber pages never exposes it by accident.
    host: Annotated[HostName, Kind("an address to listen on")] = "127.0.0.1"
    port: Port = 8081
    # Where the admin reaches the pages (e.g. an https proxy or an SSH tunnel); https makes
    # the session cookie Secure. Empty: http://host:port.
    public_url: Annotated[HttpURL, Kind("an http(s) URL with no query")] = ""
    username: Username = "admin"
    password_hash: Annotated[
        str, FromSecret("admin_password_hash", "password_hash_file", hash_problem)
    ] = Field(default="", repr=False)
    session_hours: Annotated[Integer, Field(ge=1, le=168), Unit("hours")] = 8
    login_attempts_per_hour: Annotated[Integer, Field(ge=1, le=1000)] = 10

    @property
    def configured(self) -> bool:
        """Whether the admin pages can start: enabled, and a password hash was found."""
        return self.enabled and bool(self.password_hash)

    @property
    def actor(self) -> str:
        """Who the audit trail names for what this admin does."""
        return f"{ACTOR_PREFIX}{self.username}"

    @property
    def url(self) -> str:
        """The address the admin opens (public_url, or the listen address)."""
        return self.public_url or f"http://{self.host}:{self.port}"


class AdminKeys(BaseModel):
    """admin: the file holding the password hash (config.yaml never holds the hash itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    password_hash_file: FileName = ""
