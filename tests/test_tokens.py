"""LinkSigner's tokens are exactly itsdangerous's: links already in inboxes keep working."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode

from guide.errors import TokenError
from guide.tokens import PURPOSES, LinkSigner

SECRET = "x7Hq2-tokens-test-secret-of-forty-eight-characters-"
NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)


class _Fixed(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(NOW.timestamp())


@pytest.mark.parametrize("purpose", PURPOSES)
def test_token_is_the_plain_itsdangerous_signature(purpose: str) -> None:
    signer = LinkSigner(SECRET, "https://guide.example", timedelta(days=30))
    payload = [7, "smear-campaigns"]
    plain = _Fixed(SECRET, salt=f"drg.{purpose}", digest_method=hashlib.sha256)
    data = base64_encode(b'[7,"smear-campaigns"]')
    expected = plain.sign(data).decode()
    # Twice: the second signature reuses the keyed HMAC and must not drift.
    assert signer.token(purpose, payload, NOW) == expected
    assert signer.token(purpose, payload, NOW) == expected
    assert signer.load(purpose, expected, NOW) == payload


def test_a_token_for_one_purpose_fails_on_another() -> None:
    signer = LinkSigner(SECRET, "https://guide.example", timedelta(days=30))
    token = signer.token("manage", [1], NOW)
    with pytest.raises(TokenError):
        signer.load("erase", token, NOW)


def test_message_id_is_the_hmac_of_its_parts() -> None:
    signer = LinkSigner(SECRET, "https://guide.example", timedelta(days=30))
    digest = hmac.new(SECRET.encode(), b"3:1:why-no-contact-is-hard", hashlib.sha256).hexdigest()
    for _ in range(2):
        assert signer.message_id("guide.example", 3, 1, "why-no-contact-is-hard") == (
            f"<{digest[:32]}@guide.example>"
        )


def test_lesson_ref_is_keyed_and_names_no_lesson() -> None:
    signer = LinkSigner(SECRET, "https://guide.example", timedelta(days=30))
    other = LinkSigner(SECRET[::-1], "https://guide.example", timedelta(days=30))
    ref = signer.lesson_ref("smear-campaigns")
    assert ref == signer.lesson_ref("smear-campaigns")  # cached or not, the same
    assert ref != other.lesson_ref("smear-campaigns")  # nobody without the key can make one
    assert ref != signer.lesson_ref("smear-campaign")
    assert len(ref) == 12 and "smear" not in ref.lower()
    token = signer.token("lesson", [7, ref], NOW)
    assert b"smear" not in base64_decode(token.split(".")[0])
    ids = ["why-no-contact-is-hard", "smear-campaigns", "looking-ahead"]
    assert signer.find_lesson(ref, ids) == "smear-campaigns"
    assert signer.find_lesson(ref, ids[:1]) is None
    assert other.find_lesson(ref, ids) is None
