"""VERP: an envelope sender per subscriber, `bounce+<id>-<generation>-<mac>@domain`, signed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from guide.bounce_config import BounceConfig

# 80 bits of HMAC: a forged bounce address must guess it, one delivery at a time.
_MAC_BYTES = 10
_TOKEN = re.compile(r"(\d{1,18})-(\d{1,9})-([a-z2-7]{16})")


@dataclass(frozen=True)
class BounceAddress:
    """Who a verified bounce address names: a subscriber and the generation mailed."""

    subscriber_id: int
    generation: int


@dataclass(frozen=True)
class ReturnPath:
    """Makes and verifies signed bounce addresses; keyed from the link secret."""

    secret: str
    local_part: str
    domain: str
    _key: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A key of its own, derived once: a bounce token is never a link token's or a
        # Message-ID's digest, and each address costs one copy of a keyed HMAC.
        key = hmac.new(self.secret.encode(), b"drg.bounce-address", hashlib.sha256).digest()
        object.__setattr__(self, "_key", hmac.new(key, digestmod=hashlib.sha256))

    @classmethod
    def from_config(cls, config: BounceConfig, sender_domain: str, secret: str) -> ReturnPath:
        """The return path of a deployment (whether or not it is enabled)."""
        return cls(secret, config.local_part, config.domain_for(sender_domain))

    def _mac(self, subscriber_id: int, generation: int) -> str:
        mac = self._key.copy()
        mac.update(f"{subscriber_id}-{generation}".encode("ascii"))
        # Base32 in lower case: a relay that lower-cases the local part changes nothing.
        return base64.b32encode(mac.digest()[:_MAC_BYTES]).decode("ascii").lower()

    def address(self, subscriber_id: int, generation: int) -> str:
        """The envelope sender of a message to this subscriber in this generation."""
        mac = self._mac(subscriber_id, generation)
        return f"{self.local_part}+{subscriber_id}-{generation}-{mac}@{self.domain}"

    def verify(self, address: str) -> BounceAddress | None:
        """Who `address` names, or None unless it is one of ours with a valid signature."""
        address = address.strip().strip("<>").strip()
        local, _, _domain = address.rpartition("@")
        # The domain is not signed: an operator may move bounces to another domain, and the
        # MAC alone is what makes an address trustworthy.
        prefix, plus, token = local.lower().partition("+")
        if not plus or prefix != self.local_part:
            return None
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        subscriber_id, generation = int(match[1]), int(match[2])
        if not hmac.compare_digest(self._mac(subscriber_id, generation), match[3]):
            return None
        return BounceAddress(subscriber_id, generation)
