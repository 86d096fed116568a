"""bounces: the VERP envelope sender that lets a late bounce name its subscriber; its mailbox."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

from guide.config_fields import (
    Boolean,
    DNSName,
    FileName,
    FromSecret,
    HostName,
    Kind,
    Number,
    Port,
    Unit,
    Word,
)
from guide.text import ONE_LINE, is_one_line

_VALUES = ConfigDict(extra="forbid", allow_inf_nan=False)

# Lower-case letters, digits and the few marks every relay keeps in a local part: relays may
# lower-case the address a bounce is sent to, so the prefix must survive that unchanged.
LocalPart = Annotated[
    Word,
    Field(min_length=1, max_length=20, pattern=r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$"),
    Kind("a local part of lower-case letters, digits, '.', '_' or '-'"),
]


def _one_line_password(value: str) -> str | None:
    # It travels in an IMAP LOGIN command line.
    return None if is_one_line(value) else f"the password {ONE_LINE}"


@dataclass(frozen=True, config=_VALUES)
class IMAPConfig:
    """The IMAP mailbox `bounces poll` reads when no --maildir is named."""

    host: Annotated[HostName, Kind("a host name, or empty for no IMAP mailbox")] = ""
    port: Port = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    username: Annotated[Word, Kind("one line of text")] = ""
    password: Annotated[str, FromSecret("imap_password", "password_file", _one_line_password)] = (
        Field(default="", repr=False)
    )
    folder: Annotated[Word, Field(min_length=1)] = "INBOX"
    # Empty: a report read stays in `folder`, marked seen; else it moves there.
    done_folder: Word = ""
    timeout: Annotated[Number, Field(ge=1, le=600), Unit("seconds")] = 30.0
    verify_certificates: Boolean = True
    ca_file: FileName = ""


@dataclass(frozen=True, config=_VALUES)
class BounceConfig:
    """Whether the envelope sender is a signed bounce address, and what it looks like."""

    # Off by default: the bounce address must reach `bounces ingest` (README, Bounces) before
    # mail goes out with it, or the reports would be refused and lost.
    enabled: Boolean = False
    local_part: LocalPart = "bounce"
    domain: Annotated[DNSName, Kind("a domain, or empty for the sender's")] = ""
    imap: IMAPConfig = IMAPConfig()

    def domain_for(self, sender_domain: str) -> str:
        """The domain of the bounce address: the configured one, else the sender's."""
        return self.domain or sender_domain


class IMAPKeys(BaseModel):
    """bounces.imap: the file holding the IMAP password (config.yaml never holds it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    password_file: FileName = ""


class BounceKeys(BaseModel):
    """bounces: keys config.yaml holds under other names than BounceConfig's attributes."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    imap: IMAPKeys = IMAPKeys()
