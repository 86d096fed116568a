"""The transports against real things: SMTP to an aiosmtpd server, maildir on disk, memory."""

from __future__ import annotations

import os
import socket
import stat
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from delivery.transports import (
    Envelope,
    MaildirTransport,
    MemoryTransport,
    SendResult,
    SMTPTransport,
    Status,
)
from delivery.transports.smtp import SMTPConnection
from guide.config import SMTPConfig
from guide.errors import TransportConfigError
from tests.smtpd import AuthAttempt, Fault, SMTPServers, Stage, both_kinds_of_relay

__all__ = ["both_kinds_of_relay"]  # the fixture, imported to be found by pytest


@pytest.fixture
def smtp_servers(both_kinds_of_relay: SMTPServers) -> SMTPServers:
    """Every SMTP test here runs against a relay offering PIPELINING and one that does not."""
    return both_kinds_of_relay


SENDER = "guide@recovery.example"
RECIPIENT = "reader@example.org"
USER, PASSWORD = "guide", "correct horse battery staple"
# Lines SMTP transparency must survive: a lone dot, leading dots, a long line, blank lines.
BODY = [
    "Day 1 of 30",
    ".",
    ".leading dot",
    "..two dots",
    "",
    "A line with trailing space ",
    "From the start of a line",
    "x" * 900,
    "",
    ".",
]


def message(number: int = 1, body: list[str] | None = None) -> bytes:
    """A small, complete message with CRLF line endings."""
    lines = [
        f"From: Daily Recovery Guide <{SENDER}>",
        f"To: {RECIPIENT}",
        f"Subject: Test message {number}",
        f"Message-ID: <test-{number}@recovery.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        *(BODY if body is None else body),
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def envelope(number: int = 1, recipient: str = RECIPIENT) -> Envelope:
    """An envelope carrying `message(number)`."""
    return Envelope(SENDER, recipient, message(number))


@asynccontextmanager
async def connected(config: SMTPConfig) -> AsyncIterator[SMTPConnection]:
    """A connection of an SMTPTransport, closed (QUIT) at the end."""
    connection = await SMTPTransport(config).connect()
    try:
        yield connection
    finally:
        await connection.close()


# --- SMTP: delivery -------------------------------------------------------------------------


async def test_plain_delivery_keeps_every_byte(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    async with connected(server.smtp_config()) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert result.delivered
    assert result.code == 250
    assert result.failure_class == "delivered"
    assert len(server.messages) == 1
    received = server.messages[0]
    # aiosmtplib dot-stuffs, aiosmtpd un-stuffs: what arrives is exactly what was sent.
    assert received.data == message()
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (RECIPIENT,)
    assert not received.tls
    assert received.login is None


async def test_several_messages_share_one_session(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    async with connected(server.smtp_config()) as connection:
        results = [await connection.send(envelope(n)) for n in (1, 2, 3)]

    assert [r.status for r in results] == [Status.DELIVERED] * 3
    assert server.handler.sessions == 1
    assert [m.session for m in server.messages] == [1, 1, 1]
    assert [m.data for m in server.messages] == [message(1), message(2), message(3)]
    # One transaction per message, no RSET in between, and a polite QUIT at the end.
    assert server.handler.verbs() == ["MAIL", "RCPT", "DATA"] * 3 + ["QUIT"]


async def test_connect_opens_nothing_until_the_first_send(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    connection = await SMTPTransport(server.smtp_config()).connect()
    await connection.close()
    assert server.handler.sessions == 0


# --- SMTP: TLS ------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "auto"])
async def test_starttls_with_the_ca_trusted_through_ca_file(
    smtp_servers: SMTPServers, security: str
) -> None:
    server = await smtp_servers.start(starttls=True)
    async with connected(server.smtp_config(security=security)) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert [(m.tls, m.data) for m in server.messages] == [(True, message())]
    assert server.handler.verbs() == ["MAIL", "RCPT", "DATA", "QUIT"]


async def test_implicit_tls(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start(implicit_tls=True)
    async with connected(server.smtp_config(security="tls")) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert [(m.tls, m.data) for m in server.messages] == [(True, message())]


@pytest.mark.parametrize("mode", ["starttls", "implicit_tls"])
@pytest.mark.parametrize("trust", ["another CA", "system CAs"])
async def test_untrusted_certificate_is_a_configuration_error(
    smtp_servers: SMTPServers, mode: str, trust: str
) -> None:
    server = await smtp_servers.start(
        starttls=mode == "starttls", implicit_tls=mode == "implicit_tls"
    )
    ca_file = str(smtp_servers.untrusted_ca_file()) if trust == "another CA" else ""
    config = server.smtp_config(ca_file=ca_file, verify_certificates=True)
    async with connected(config) as connection:
        with pytest.raises(TransportConfigError) as caught:
            await connection.send(envelope())

    assert caught.value.key == "smtp.verify_certificates"
    assert "smtp.verify_certificates" in str(caught.value)
    assert server.messages == []
    assert "MAIL" not in server.handler.verbs()


async def test_verification_off_accepts_an_unknown_certificate(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start(starttls=True)
    config = server.smtp_config(ca_file="", verify_certificates=False)
    async with connected(config) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert [m.tls for m in server.messages] == [True]


async def test_starttls_required_but_not_offered(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    async with connected(server.smtp_config(security="starttls")) as connection:
        with pytest.raises(TransportConfigError) as caught:
            await connection.send(envelope())

    assert caught.value.key == "smtp.security"
    assert server.messages == []


# --- SMTP: AUTH -----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_over_starttls(smtp_servers: SMTPServers, mechanism: str) -> None:
    server = await smtp_servers.start(
        starttls=True, credentials=(USER, PASSWORD), mechanisms=[mechanism]
    )
    async with connected(server.smtp_config(security="auto")) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert server.handler.auth_attempts == [AuthAttempt(mechanism, USER, True)]
    assert [(m.login, m.tls) for m in server.messages] == [(USER, True)]


async def test_wrong_password_is_a_configuration_error(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start(starttls=True, credentials=(USER, PASSWORD))
    wrong = "not the password"
    async with connected(server.smtp_config(password=wrong)) as connection:
        with pytest.raises(TransportConfigError) as caught:
            await connection.send(envelope())

    assert caught.value.key == "smtp.username"
    assert "535" in str(caught.value)
    assert wrong not in str(caught.value)
    attempts = server.handler.auth_attempts
    assert attempts
    assert not any(attempt.success for attempt in attempts)
    assert server.messages == []
    assert "MAIL" not in server.handler.verbs()


async def test_temporary_auth_failure_is_transient(smtp_servers: SMTPServers) -> None:
    # RFC 4954: 454 4.7.0 means the relay's authentication service is down for a moment;
    # stopping the service as if the password were wrong would be the wrong alarm.
    server = await smtp_servers.start(
        starttls=True, credentials=(USER, PASSWORD), mechanisms=["PLAIN"]
    )
    server.refuse_auth("454 4.7.0 Temporary authentication failure")
    async with connected(server.smtp_config()) as connection:
        failed = await connection.send(envelope(1))
        retried = await connection.send(envelope(2))

    assert (failed.status, failed.code) == (Status.TRANSIENT, 454)
    assert retried.status is Status.DELIVERED
    assert [a.success for a in server.handler.auth_attempts] == [False, True]
    assert [(m.session, m.login) for m in server.messages] == [(2, USER)]


async def test_credentials_never_cross_in_clear_text(smtp_servers: SMTPServers) -> None:
    # security 'none' with a username: the relay offers AUTH only after STARTTLS.
    server = await smtp_servers.start(starttls=True, credentials=(USER, PASSWORD))
    async with connected(server.smtp_config(security="none")) as connection:
        with pytest.raises(TransportConfigError) as caught:
            await connection.send(envelope())

    assert caught.value.key == "smtp.security"
    assert "AUTH" not in server.handler.verbs()
    assert server.handler.auth_attempts == []


# --- SMTP: the relay's answers --------------------------------------------------------------

FAULTS = [
    ("450 4.2.0 Mailbox busy", Status.TRANSIENT, "4.2.0", "transient"),
    ("451 4.3.0 Temporary server error", Status.TRANSIENT, "4.3.0", "transient"),
    ("550 5.1.1 No such user", Status.PERMANENT, "5.1.1", "bounced"),
    ("554 5.7.1 Rejected by policy", Status.PERMANENT, "5.7.1", "held"),
]


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize(("reply", "status", "enhanced", "failure_class"), FAULTS)
async def test_refusals_are_classified_and_the_session_goes_on(
    smtp_servers: SMTPServers,
    stage: Stage,
    reply: str,
    status: Status,
    enhanced: str,
    failure_class: str,
) -> None:
    server = await smtp_servers.start()
    server.script(Fault.reply_at(stage, reply), None)
    async with connected(server.smtp_config()) as connection:
        refused = await connection.send(envelope(1))
        accepted = await connection.send(envelope(2))

    code, text = reply.split(" ", 1)
    assert refused.status is status
    assert refused.code == int(code)
    assert refused.reply == text
    assert refused.enhanced == enhanced
    assert refused.failure_class == failure_class
    assert not refused.delivered
    # The refused transaction is reset and the next message goes out on the same session.
    assert accepted.status is Status.DELIVERED
    assert [(m.session, m.data) for m in server.messages] == [(1, message(2))]
    assert server.handler.sessions == 1
    assert "RSET" in server.handler.verbs()


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
async def test_dropped_connection_is_transient_and_the_next_send_reconnects(
    smtp_servers: SMTPServers, stage: Stage
) -> None:
    server = await smtp_servers.start()
    server.script(Fault.disconnect_at(stage), None)
    async with connected(server.smtp_config()) as connection:
        dropped = await connection.send(envelope(1))
        retried = await connection.send(envelope(2))

    assert dropped.status is Status.TRANSIENT
    assert dropped.code is None
    assert dropped.failure_class == "transient"
    assert "connection lost" in dropped.reply
    assert retried.status is Status.DELIVERED
    assert server.handler.sessions == 2
    assert [(m.session, m.data) for m in server.messages] == [(2, message(2))]


async def test_421_closes_the_session_and_the_next_send_reconnects(
    smtp_servers: SMTPServers,
) -> None:
    server = await smtp_servers.start()
    server.script(Fault.reply_at("RCPT", "421 4.4.2 Closing connection"), None)
    async with connected(server.smtp_config()) as connection:
        closing = await connection.send(envelope(1))
        retried = await connection.send(envelope(2))

    assert (closing.status, closing.code) == (Status.TRANSIENT, 421)
    assert retried.status is Status.DELIVERED
    assert [(m.session, m.data) for m in server.messages] == [(2, message(2))]


async def test_250_then_hang_up_counts_as_delivered(smtp_servers: SMTPServers) -> None:
    # Reporting this as a failure would make the scheduler send the lesson twice.
    server = await smtp_servers.start()
    server.script(Fault.accept_then_close())
    async with connected(server.smtp_config()) as connection:
        result = await connection.send(envelope())

    assert result.status is Status.DELIVERED
    assert [m.data for m in server.messages] == [message()]


@pytest.mark.parametrize(
    "greeting",
    [
        "421 4.3.2 Service not available, closing transmission channel",
        # Relays often name themselves in the greeting; a name with 'auth' in it is no
        # configuration error.
        "421 4.7.0 smtp-auth.relay.test Error: too many connections",
    ],
)
async def test_busy_greeting_is_transient(smtp_servers: SMTPServers, greeting: str) -> None:
    server = await smtp_servers.start()
    server.greet(greeting)
    async with connected(server.smtp_config()) as connection:
        busy = await connection.send(envelope(1))
        retried = await connection.send(envelope(2))

    assert (busy.status, busy.code) == (Status.TRANSIENT, 421)
    assert retried.status is Status.DELIVERED
    assert [(m.session, m.data) for m in server.messages] == [(2, message(2))]


async def test_relay_down_is_transient(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    # A bound socket that does not listen: connections to its port are refused, and no
    # other test can take the port meanwhile.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        async with connected(server.smtp_config(port=port)) as connection:
            result = await connection.send(envelope())

    assert result.status is Status.TRANSIENT
    assert result.code is None
    assert result.failure_class == "transient"
    assert "relay unreachable" in result.reply


async def test_unusable_recipient_address_is_refused_for_good(smtp_servers: SMTPServers) -> None:
    # aiosmtplib refuses (ValueError) to put an address with a space on the RCPT line.
    server = await smtp_servers.start()
    async with connected(server.smtp_config()) as connection:
        refused = await connection.send(envelope(1, "reader name@example.org"))
        accepted = await connection.send(envelope(2))

    assert refused.status is Status.PERMANENT
    assert refused.enhanced == "5.1.3"
    assert refused.failure_class == "bounced"
    assert accepted.status is Status.DELIVERED
    assert [m.rcpt_tos for m in server.messages] == [(RECIPIENT,)]


# --- maildir --------------------------------------------------------------------------------


async def test_maildir_writes_one_private_file_into_new(tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    connection = await MaildirTransport(root).connect()
    result = await connection.send(envelope())
    await connection.close()

    assert result.status is Status.DELIVERED
    assert result.code == 250
    files = list((root / "new").iterdir())
    assert len(files) == 1
    assert files[0].name.endswith(".eml")
    assert files[0].name in result.reply
    # The envelope sender first, as a delivering MTA records it; then the message unchanged.
    assert files[0].read_bytes() == f"Return-Path: <{SENDER}>\r\n".encode() + message()
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert list((root / "tmp").iterdir()) == []
    assert list((root / "cur").iterdir()) == []
    for sub in ("cur", "new", "tmp"):
        assert stat.S_IMODE((root / sub).stat().st_mode) == 0o700


async def test_maildir_gives_every_message_its_own_file(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "outbox")
    first, second = await transport.connect(), await transport.connect()
    results = [await first.send(envelope(1)), await second.send(envelope(2))]

    assert [r.status for r in results] == [Status.DELIVERED] * 2
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert len({f.name for f in files}) == 2
    expected = [f"Return-Path: <{SENDER}>\r\n".encode() + message(n) for n in (1, 2)]
    assert sorted(f.read_bytes() for f in files) == sorted(expected)


async def test_maildir_write_failure_is_transient(tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    connection = await MaildirTransport(root).connect()
    os.rmdir(root / "tmp")  # as if the folder vanished or the disk failed under us
    result = await connection.send(envelope())

    assert result.status is Status.TRANSIENT
    assert result.code is None
    assert result.reply.startswith("maildir write failed")
    assert list((root / "new").iterdir()) == []


# --- memory ---------------------------------------------------------------------------------


async def test_memory_returns_scripted_failures_then_delivers() -> None:
    busy = SendResult(Status.TRANSIENT, 451, "4.3.0 Try again later")
    gone = SendResult(Status.PERMANENT, 550, "5.1.1 No such user")
    transport = MemoryTransport(script=deque([busy, gone]))
    connection = await transport.connect()
    results = [await connection.send(envelope(n)) for n in (1, 2, 3)]

    assert results[:2] == [busy, gone]
    assert results[2].status is Status.DELIVERED
    assert transport.outbox == [envelope(3)]
    assert not transport.script


async def test_memory_keeps_every_message_when_nothing_is_scripted() -> None:
    transport = MemoryTransport()
    connection = await transport.connect()
    results = [await connection.send(envelope(n)) for n in (1, 2)]
    await connection.close()

    assert [r.code for r in results] == [250, 250]
    assert transport.outbox == [envelope(1), envelope(2)]
