"""RFC 2920 pipelining: the envelope in one write, and replies however the relay sends them.

The fault tests in test_smtp_transport.py run against both kinds of relay (with and without
PIPELINING). Here: that pipelining really happens, that replies split or joined in any way
are read in order, and the relays aiosmtpd cannot play: one that takes DATA after refusing the
recipient, one that sends garbage or never finishes a reply, one that goes silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
import pytest

from delivery.transports import Envelope, SMTPTransport, Status
from delivery.transports.sessions import Replies, wire_body
from guide.config import SMTPConfig
from tests.smtpd import SMTPServers, both_kinds_of_relay

__all__ = ["both_kinds_of_relay"]  # the fixture, imported to be found by pytest

SENDER = "guide@recovery.example"
DATA = b"Subject: hello\r\n\r\nFirst line\r\n.hidden dot\r\n"


def envelope(recipient: str = "reader@example.org") -> Envelope:
    return Envelope(SENDER, recipient, DATA)


async def test_the_envelope_goes_in_one_write_when_offered(
    both_kinds_of_relay: SMTPServers,
) -> None:
    server = await both_kinds_of_relay.start()
    connection = await SMTPTransport(server.smtp_config()).connect()
    results = [await connection.send(envelope(f"r{n}@example.org")) for n in range(3)]
    await connection.close()

    assert [r.status for r in results] == [Status.DELIVERED] * 3
    assert [m.rcpt_tos for m in server.messages] == [(f"r{n}@example.org",) for n in range(3)]
    together = [
        read
        for _, read in server.handler.reads
        if b"MAIL FROM:" in read and b"RCPT TO:" in read and read.endswith(b"DATA\r\n")
    ]
    if both_kinds_of_relay.pipelining:
        assert len(together) == 3  # one write per envelope, every time
    else:
        assert together == []  # lockstep: each command waited for its reply
        assert not any(b"MAIL FROM:" in r and b"RCPT TO:" in r for _, r in server.handler.reads)


# --- reading replies ------------------------------------------------------------------------

REPLIES = (
    b"250 2.1.0 Ok\r\n"
    b"250-first line\r\n250-second line\r\n250 2.1.5 last line\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
)
EXPECTED = [
    (250, "2.1.0 Ok"),
    (250, "first line\nsecond line\n2.1.5 last line"),
    (354, "End data with <CR><LF>.<CR><LF>"),
]


@pytest.mark.parametrize("size", [1, 2, 5, 17, len(REPLIES)])
async def test_replies_are_read_in_order_however_they_are_split(size: int) -> None:
    replies = Replies(timeout=5)
    for start in range(0, len(REPLIES), size):
        replies.data_received(REPLIES[start : start + size])
    got = [await replies.next() for _ in EXPECTED]
    assert [(r.code, r.message) for r in got] == EXPECTED
    assert not replies.buffer and not replies.replies


async def test_a_reader_waiting_for_a_reply_wakes_when_it_arrives() -> None:
    replies = Replies(timeout=5)
    waiting = asyncio.ensure_future(replies.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    replies.data_received(b"250 Ok\r")
    await asyncio.sleep(0)
    assert not waiting.done()  # half a line is not a reply
    replies.data_received(b"\n")
    assert (await waiting).code == 250


async def test_a_silent_relay_times_out() -> None:
    replies = Replies(timeout=0.05)
    with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
        await replies.next()


async def test_a_lost_connection_fails_the_waiting_reader_but_keeps_what_came() -> None:
    replies = Replies(timeout=5)
    replies.data_received(b"250 Ok\r\n")
    replies.connection_lost(ConnectionResetError("reset by peer"))
    assert (await replies.next()).code == 250
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await replies.next()


def test_the_body_is_dot_stuffed_and_terminated() -> None:
    assert wire_body(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert wire_body(b"a\nb\rc") == b"a\r\nb\r\nc\r\n.\r\n"  # lone line endings made CRLF
    assert wire_body(b"") == b"\r\n.\r\n"


# --- relays aiosmtpd cannot play --------------------------------------------------------------

Answer = Callable[[bytes], bytes | None]  # a command line in, the reply (None: stay silent)


def compliant(line: bytes) -> bytes | None:
    verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().strip()
    return {
        b"EHLO": b"250-raw.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n",
        b"MAIL": b"250 2.1.0 Ok\r\n",
        b"RCPT": b"250 2.1.5 Ok\r\n",
        b"DATA": b"354 go ahead\r\n",
        b"RSET": b"250 2.0.0 Ok\r\n",
        b"QUIT": b"221 2.0.0 Bye\r\n",
    }.get(verb, b"502 5.5.2 unknown\r\n")


class RawRelay:
    """A hand-driven SMTP server: `answer` decides each reply; lines and bodies are kept."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.lines: list[bytes] = []
        self.bodies: list[bytes] = []
        self.sessions = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 raw.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                self.lines.append(line)
                reply = self.answer(line)
                if reply is None:
                    await asyncio.sleep(3600)  # silent
                writer.write(reply or b"")
                if line.upper().startswith(b"DATA") and reply and reply.startswith(b"354"):
                    body = b""
                    while (part := await reader.readline()) not in (b".\r\n", b""):
                        body += part
                    body += part
                    self.bodies.append(body)
                    writer.write(b"250 2.0.0 queued\r\n" if body != b".\r\n" else b"554 5.5.1\r\n")
                if line.upper().startswith(b"QUIT"):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_relay(answer: Answer, seconds: float = 5) -> AsyncIterator[tuple[RawRelay, Any]]:
    relay = RawRelay(answer)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = SMTPConfig(host="127.0.0.1", port=port, security="none", timeout=seconds)
    connection = await SMTPTransport(config).connect()
    try:
        yield relay, connection
    finally:
        await connection.close()
        server.close()
        await server.wait_closed()


async def test_data_accepted_after_a_refused_recipient_is_ended_empty() -> None:
    def refuse_rcpt(line: bytes) -> bytes | None:
        if line.startswith(b"RCPT") and b"gone@" in line:
            return b"550 5.1.1 no such user\r\n"
        return compliant(line)

    async with raw_relay(refuse_rcpt) as (relay, connection):
        refused = await connection.send(envelope("gone@example.org"))
        delivered = await connection.send(envelope())

    assert (refused.status, refused.failure_class, refused.code) == (
        Status.PERMANENT,
        "bounced",
        550,
    )
    assert delivered.delivered
    # The refused message was ended with a lone dot, never sent; then RSET, then the next one.
    assert relay.bodies == [b".\r\n", wire_body(DATA)]
    assert b"RSET\r\n" in relay.lines
    assert relay.sessions == 1


@pytest.mark.parametrize(
    "garbage",
    [b"hello there\r\n", b"250-" + b"x" * 40_000],
    ids=["not a reply", "a reply that never ends"],
)
async def test_a_garbled_relay_is_transient_and_the_next_send_reconnects(garbage: bytes) -> None:
    replies = iter([garbage])

    def garble_mail(line: bytes) -> bytes | None:
        if line.startswith(b"MAIL"):
            return next(replies, b"250 2.1.0 Ok\r\n")
        return compliant(line)

    async with raw_relay(garble_mail) as (relay, connection):
        first = await connection.send(envelope())
        second = await connection.send(envelope())

    assert first.status is Status.TRANSIENT
    assert second.delivered
    assert relay.sessions == 2


async def test_a_relay_silent_mid_transaction_is_a_transient_timeout() -> None:
    silent = iter([True])

    def hang_at_rcpt(line: bytes) -> bytes | None:
        if line.startswith(b"RCPT") and next(silent, False):
            return None
        return compliant(line)

    async with raw_relay(hang_at_rcpt, seconds=1) as (relay, connection):
        first = await connection.send(envelope())
        second = await connection.send(envelope())

    assert first.status is Status.TRANSIENT
    assert "connection lost" in first.reply
    assert second.delivered
    assert relay.sessions == 2
