"""The sender child process: the same results as the in-process SMTP transport."""

from __future__ import annotations

import dataclasses

import pytest

from delivery.transports import Envelope, Status
from delivery.transports.process import ProcessTransport
from guide.config import Config
from guide.errors import TransportConfigError
from tests.smtpd import Fault, SMTPServer, SMTPServers, smtp_servers
from wiring import make_transport

__all__ = ["smtp_servers"]


def config_for(server: SMTPServer, **smtp: object) -> Config:
    return Config(transport="smtp", smtp=server.smtp_config(**smtp))


async def test_sends_over_several_connections_and_classifies_replies(
    smtp_servers: SMTPServers,
) -> None:
    server = await smtp_servers.start()
    server.script(None, Fault.reply_at("RCPT", "550 5.1.1 No such user"), None, None)
    transport = make_transport(config_for(server))
    assert isinstance(transport, ProcessTransport)
    try:
        first, second = await transport.connect(), await transport.connect()
        results = [
            await first.send(
                Envelope("guide@example.org", "a@example.org", b"Subject: 1\r\n\r\nx\r\n")
            ),
            await second.send(
                Envelope("guide@example.org", "b@example.org", b"Subject: 2\r\n\r\nx\r\n")
            ),
            await second.send(
                Envelope("guide@example.org", "c@example.org", b"Subject: 3\r\n\r\nx\r\n")
            ),
            await first.send(
                Envelope("guide@example.org", "d@example.org", b"Subject: 4\r\n\r\nx\r\n")
            ),
        ]
        await first.close()
        await second.close()
    finally:
        await transport.close()
    assert [r.status for r in results] == [
        Status.DELIVERED,
        Status.PERMANENT,
        Status.DELIVERED,
        Status.DELIVERED,
    ]
    assert results[1].failure_class == "bounced" and results[1].code == 550
    assert [m.rcpt_tos[0] for m in server.messages] == [
        "a@example.org",
        "c@example.org",
        "d@example.org",
    ]
    assert server.handler.sessions == 2  # one SMTP session per connection, reused


async def test_configuration_errors_cross_the_process_boundary(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start(starttls=True, credentials=("guide", "right"))
    transport = make_transport(config_for(server, password="wrong"))
    try:
        connection = await transport.connect()
        with pytest.raises(TransportConfigError) as caught:
            await connection.send(Envelope("guide@example.org", "a@example.org", b"\r\n"))
        assert caught.value.key == "smtp.username"
        assert "wrong" not in str(caught.value)
    finally:
        await transport.close()
    assert server.messages == []


async def test_in_process_when_turned_off(smtp_servers: SMTPServers) -> None:
    server = await smtp_servers.start()
    config = config_for(server)
    config = dataclasses.replace(
        config, dispatch=dataclasses.replace(config.dispatch, sender_process=False)
    )
    assert not isinstance(make_transport(config), ProcessTransport)
