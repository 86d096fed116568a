"""DKIM signing (dkimpy): prepends a DKIM-Signature header to finished message bytes."""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from guide.config import DKIMConfig

# What the signature covers: the headers a forger would change, including the unsubscribe
# headers Gmail and Yahoo require to be signed for one-click unsubscribe.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


@dataclass(frozen=True)
class DKIMSigner:
    """Signs with one selector and key, relaxed/relaxed canonicalization."""

    config: DKIMConfig

    def sign(self, message: bytes) -> bytes:
        """`message` with a DKIM-Signature header in front."""
        signature = dkim.sign(
            message,
            self.config.selector.encode("ascii"),
            self.config.domain.encode("ascii"),
            self.config.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(signature) + message


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Whether DMARC's relaxed alignment can hold: one domain is the other or a subdomain of it.

    DMARC compares organizational domains (the public suffix list); without that list, a
    parent/child relation is the part we can judge, and what operators get wrong in practice.
    """
    signing, sender = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return signing == sender or sender.endswith(f".{signing}") or signing.endswith(f".{sender}")
