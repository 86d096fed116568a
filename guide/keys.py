"""The one place that judges keys: link-signing keys must be strong, DKIM keys must parse."""

from __future__ import annotations

import re
import secrets
from itertools import pairwise

from dkim.crypto import UnparsableKeyError, parse_pem_private_key

HOW = "make one with `openssl rand -base64 32`"
# 32 random bytes: 43 characters of base64 (6 bits each), or 64 hex digits (4 bits each).
MIN_KEY_CHARACTERS = 43
MIN_HEX_DIGITS = 64
# Placeholders people type when a form asks for a key; none belongs in a random one.
WELL_KNOWN = (
    "changeme",
    "change-me",
    "secret",
    "password",
    "passw0rd",
    "example",
    "default",
    "letmein",
    "qwerty",
    "123456",
    "abcdef",
)
_HEX = re.compile(r"[0-9A-Fa-f]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
REPEAT = 8  # a run of this many characters seen twice: a pattern, not chance
MIN_DKIM_BITS = 1024  # verifiers (dkimpy, Gmail) reject shorter RSA keys


def link_key_problem(key: str) -> str | None:
    """Why `key` is too weak to sign links with, or None when it looks like 32+ random bytes."""
    if not _PRINTABLE.fullmatch(key):
        return _weak("must be printable ASCII with no spaces")
    hexadecimal = _HEX.fullmatch(key) is not None
    needed = MIN_HEX_DIGITS if hexadecimal else MIN_KEY_CHARACTERS
    if len(key) < needed:
        return (
            f"the link-signing key is too short ({len(key)} characters): it needs 32 random "
            f"bytes, {MIN_KEY_CHARACTERS}+ characters of base64 or {MIN_HEX_DIGITS} hex digits "
            f"({HOW})"
        )
    lowered = key.lower()
    word = next((word for word in WELL_KNOWN if word in lowered), None)
    if word is not None:
        return _weak(f"contains the well-known word {word!r}")
    if _repeats(key):
        return _weak("repeats itself")
    distinct = len(set(key))
    if distinct < (10 if hexadecimal else 16):
        return _weak(f"uses only {distinct} different characters")
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairwise(key))
    # Random text has about one such pair in twenty (hex: one in six); "abcd…", "aaaa…" most.
    if steps * 2 > len(key) - 1:
        return _weak("is mostly runs of neighbouring characters")
    return None


def _weak(reason: str) -> str:
    return f"the link-signing key {reason}: use random bytes ({HOW})"


def _repeats(key: str) -> bool:
    seen: set[str] = set()
    for start in range(len(key) - REPEAT + 1):
        part = key[start : start + REPEAT]
        if part in seen:
            return True
        seen.add(part)
    return False


def new_link_key() -> str:
    """A fresh random link-signing key (64 characters of base64url) that passes the checks."""
    while True:
        # 48 bytes; the check fails by chance about once in ten million keys: draw again then.
        key = secrets.token_urlsafe(48)
        if link_key_problem(key) is None:
            return key


def dkim_key_problem(pem: bytes) -> str | None:
    """Why `pem` cannot sign DKIM signatures, or None for an RSA private key dkimpy can use."""
    # The same parser dkim.sign uses, so what passes here signs later.
    try:
        key = parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        return "the DKIM key is not a PEM RSA private key (-----BEGIN PRIVATE KEY-----)"
    modulus, public, private = key["modulus"], key["publicExponent"], key["privateExponent"]
    if not all(isinstance(n, int) and n > 1 for n in (modulus, public, private)):
        return "the DKIM key is not a usable RSA private key"
    if modulus.bit_length() < MIN_DKIM_BITS:
        return (
            f"the DKIM key has {modulus.bit_length()} bits; verifiers need at least "
            f"{MIN_DKIM_BITS} bits (2048 recommended)"
        )
    # A damaged key parses but signs garbage: check that its halves undo each other.
    probe = 0x5EED
    if pow(pow(probe, private, modulus), public, modulus) != probe:
        return "the DKIM key is damaged: its private and public parts do not match"
    return None
