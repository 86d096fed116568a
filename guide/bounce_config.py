"""bounces: the VERP envelope sender that lets a late bounce name its subscriber."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from guide.config_fields import Boolean, DNSName, Kind, Word

_VALUES = ConfigDict(extra="forbid", allow_inf_nan=False)

# Lower-case letters, digits and the few marks every relay keeps in a local part: relays may
# lower-case the address a bounce is sent to, so the prefix must survive that unchanged.
LocalPart = Annotated[
    Word,
    Field(min_length=1, max_length=20, pattern=r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$"),
    Kind("a local part of lower-case letters, digits, '.', '_' or '-'"),
]


@dataclass(frozen=True, config=_VALUES)
class BounceConfig:
    """Whether the envelope sender is a signed bounce address, and what it looks like."""

    # Off by default: the bounce address must reach `bounces ingest` (README, Bounces) before
    # mail goes out with it, or the reports would be refused and lost.
    enabled: Boolean = False
    local_part: LocalPart = "bounce"
    domain: Annotated[DNSName, Kind("a domain, or empty for the sender's")] = ""

    def domain_for(self, sender_domain: str) -> str:
        """The domain of the bounce address: the configured one, else the sender's."""
        return self.domain or sender_domain
