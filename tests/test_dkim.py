"""Every kind of email is DKIM-signed when DKIM is configured: lesson, closing, confirm, test.

Each message is verified with dkimpy against the public key, served by a DNS function in the
test, so a missing or broken signature fails here whichever path built the message.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from delivery.transports import MemoryTransport
from guide.config import Config, DKIMConfig
from guide.records import NewSubscriber
from scheduler import subscribers as life
from tests.harness import LINK_SECRET, Clock, config_for, make_parts
from web.app import create_app
from wiring import Parts, web_context

REPO = Path(__file__).resolve().parent.parent
SELECTOR = "s2026"
DOMAIN = "localhost"  # the default sender address is guide@localhost
START = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Key:
    """A fresh RSA key: the PEM the service signs with, the TXT record a verifier reads."""

    pem: bytes
    record: bytes

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS lookup, answering only for our selector."""
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return self.record


@pytest.fixture(scope="module")
def key() -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


def assert_signed(data: bytes, key: Key) -> None:
    """The message carries one valid signature by our selector over the headers that matter."""
    assert data.startswith(b"DKIM-Signature:"), data[:200]
    assert data.count(b"DKIM-Signature:") == 1
    assert dkim.verify(data, dnsfunc=key.dns), "the DKIM signature does not verify"
    header = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    tags = re.sub(r"\s+", "", header.split("\r\n\r\n")[0].split("DKIM-Signature:", 1)[1])
    signed = re.search(r"h=([^;]+)", tags)
    assert signed is not None
    for name in ("from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in signed.group(1).lower().split(":")


def test_an_unsigned_or_altered_message_fails_the_check(key: Key) -> None:
    with pytest.raises(AssertionError):
        assert_signed(b"From: a@localhost\r\nSubject: x\r\n\r\nbody\r\n", key)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    data = dkim.sign(
        b"From: a@localhost\r\nTo: b@localhost\r\nSubject: x\r\n\r\nbody\r\n",
        SELECTOR.encode(),
        DOMAIN.encode(),
        other,
    )
    with pytest.raises(AssertionError):
        assert_signed(bytes(data) + b"From: a@localhost\r\n\r\nbody\r\n", key)


def signing_config(tmp_path: Path, key: Key) -> Config:
    config = config_for(tmp_path)
    dkim_config = DKIMConfig(selector=SELECTOR, domain=DOMAIN, private_key=key.pem)
    return dataclasses.replace(config, dkim=dkim_config)


@pytest.fixture
async def parts(tmp_path: Path, key: Key) -> AsyncIterator[tuple[Parts, MemoryTransport, Clock]]:
    clock = Clock(START)
    transport = MemoryTransport()
    built = await make_parts(signing_config(tmp_path, key), clock, transport)
    try:
        yield built, transport, clock
    finally:
        await built.close()


async def add_reader(parts: Parts, now: datetime) -> None:
    new = NewSubscriber(
        email="reader@example.org", sequence_id="no-contact", timezone="UTC", send_time="06:00"
    )
    await life.add(parts.store, new, now=now - timedelta(minutes=1), actor="test")


async def test_lessons_and_the_closing_email_are_signed(
    parts: tuple[Parts, MemoryTransport, Clock], key: Key
) -> None:
    built, transport, clock = parts
    await add_reader(built, clock.now)
    report = await built.dispatcher.tick()
    assert report.results["sent"] == 1
    lesson = transport.outbox[-1].data
    assert b"Day 1 of 30" in lesson
    assert_signed(lesson, key)

    # Skip the rest of the sequence, so the next pass sends the closing email.
    sub = await built.store.find("reader@example.org")
    assert sub is not None
    sequences = built.library.current()
    for _ in range(29):
        await life.skip(built.store, sub, sequences, now=clock.now, actor="test")
    clock.advance(timedelta(days=1))
    assert (await built.dispatcher.tick()).results["sent"] == 1
    closing = transport.outbox[-1].data
    assert b"Day " not in closing and b"Thank you for these 30 days" in closing
    assert_signed(closing, key)


async def test_the_confirmation_email_is_signed(
    parts: tuple[Parts, MemoryTransport, Clock], key: Key
) -> None:
    built, transport, _ = parts
    client = TestClient(TestServer(create_app(web_context(built))))
    await client.start_server()
    try:
        form = await (await client.get("/subscribe")).text()
        match = CSRF_FIELD.search(form)
        assert match
        data = {
            "csrf": match.group(1),
            "email": "new@example.org",
            "timezone": "UTC",
            "send_time": "07:30",
        }
        assert (await client.post("/subscribe", data=data)).status == 200
        from web import signup

        while signup._background:
            await next(iter(signup._background))
    finally:
        await client.close()
    [confirmation] = [e for e in transport.outbox if e.recipient == "new@example.org"]
    assert b"/confirm/" in confirmation.data
    assert_signed(confirmation.data, key)


def test_send_test_is_signed(tmp_path: Path, key: Key) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"lessons:\n  dir: {REPO / 'lessons'}\ndkim:\n  selector: {SELECTOR}\n  domain: {DOMAIN}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRG_")}
    env["DRG_DKIM_PRIVATE_KEY"] = key.pem.decode()
    env["DRG_LINK_SECRET"] = LINK_SECRET
    command = [sys.executable, str(REPO / "run.py"), "--config", str(config)]
    result = subprocess.run(
        [*command, "send-test", "1", "--to", "admin@example.org"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [eml] = list((tmp_path / "state" / "outbox" / "new").glob("*.eml"))
    # The outbox records the envelope sender first, as a delivering MTA would; it is not signed.
    return_path, _, data = eml.read_bytes().partition(b"\r\n")
    assert return_path == b"Return-Path: <guide@localhost>"
    assert_signed(data, key)
