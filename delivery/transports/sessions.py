"""SMTP transactions over a session aiosmtplib opened: pipelined (RFC 2920) or in lockstep.

aiosmtplib connects, reads the greeting, says EHLO and does STARTTLS and AUTH. For the
transactions that follow it reads exactly one reply per command it writes (its protocol drops
what arrives between commands), so it cannot pipeline: every message costs four round trips
(MAIL, RCPT, DATA, the body). When the relay advertises PIPELINING, as Postfix, Exim and the
big providers do, `PipelinedSession` takes the connection's transport over and sends MAIL,
RCPT and DATA in one write and the body in a second: two round trips per message, half the
wake-ups on both ends. A relay that does not advertise it gets `LockstepSession`, which is
aiosmtplib's own commands. Both raise aiosmtplib's exceptions, so the caller classifies a
refusal, a timeout or a dropped connection the same way whichever session it has.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from typing import Protocol

import aiosmtplib
from aiosmtplib import SMTPResponse

# RFC 5321 4.5.3.1.5 allows 512 octets a line; multi-line EHLO replies are a few KB. A relay
# that sends more without finishing a reply is broken, and must not grow our memory.
_MAX_REPLY = 32 * 1024
_MAX_LINE = 8 * 1024  # aiosmtplib's limit too
_LONE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def wire_body(data: bytes) -> bytes:
    """`data` as DATA sends it: CRLF line endings, dot-stuffed (RFC 5321 4.5.2), terminated."""
    # Counting and replacing bytes runs in C at memory speed; a regular expression over each
    # 10 KB body took a quarter of a millisecond, as long as the whole SMTP conversation.
    lines = data.count(b"\n")
    if data.count(b"\r") != lines or data.count(b"\r\n") != lines:
        data = _LONE_LINE_ENDING.sub(b"\r\n", data)  # not ours: our messages are CRLF already
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data + b".\r\n"


class Session(Protocol):
    """One open SMTP session that can run transactions."""

    @property
    def usable(self) -> bool:
        """Whether the next transaction can start here (else reconnect)."""

    async def transaction(self, sender: str, recipient: str, data: bytes) -> SMTPResponse:
        """One message to one recipient; the final 250, or an aiosmtplib exception."""

    async def reset(self) -> None:
        """RSET after a refused transaction."""

    async def quit(self) -> None:
        """QUIT and close; never raises."""


class LockstepSession:
    """aiosmtplib's own MAIL, RCPT and DATA, one reply at a time."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.size = client.supports_extension("size")

    @property
    def usable(self) -> bool:
        """Whether aiosmtplib still holds a connection."""
        return self.client.is_connected

    async def transaction(self, sender: str, recipient: str, data: bytes) -> SMTPResponse:
        """mail/rcpt/data rather than sendmail(): one recipient, and no second address parse."""
        options = [f"SIZE={len(data)}"] if self.size else []
        await self.client.mail(sender, options=options)
        await self.client.rcpt(recipient)
        return await self.client.data(data)

    async def reset(self) -> None:
        """RSET."""
        await self.client.rset()

    async def quit(self) -> None:
        """QUIT, or just close when the relay no longer listens."""
        if not self.client.is_connected:
            return
        try:
            await self.client.quit()
        except (aiosmtplib.SMTPException, OSError):
            self.client.close()


class Replies(asyncio.Protocol):
    """Reads every reply on the connection and keeps them in order, however they arrive."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.buffer = bytearray()
        self.replies: collections.deque[SMTPResponse] = collections.deque()
        self.lost: aiosmtplib.SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        """Append, take every complete reply off the front, and wake the reader."""
        buffer = self.buffer
        buffer += data
        start = 0
        while True:
            offset, lines, code = start, [], 0
            while (end := buffer.find(b"\n", offset)) != -1:
                line = bytes(buffer[offset : end + 1])
                offset = end + 1
                # Every line of one reply starts with the same three digits (RFC 5321 4.2.1).
                if (
                    not line[:3].isdigit()
                    or len(line) > _MAX_LINE
                    or line[:3] != buffer[start : start + 3]
                ):
                    text = line[:80].decode("ascii", "replace").strip()
                    self._fail(aiosmtplib.SMTPServerDisconnected(f"unreadable reply {text!r}"))
                    return
                lines.append(line[4:].strip(b" \t\r\n"))
                if line[3:4] != b"-":
                    code = int(line[:3])
                    break
            if not code:
                break  # the rest of the reply is still on its way
            message = b"\n".join(lines).decode("utf-8", "surrogateescape")
            self.replies.append(SMTPResponse(code, message))
            start = offset
        del buffer[:start]
        if len(buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPServerDisconnected("the relay's reply is too long"))
        elif self.replies:
            self._wake()  # only for a whole reply: a woken reader with none has timed out

    def eof_received(self) -> bool:
        """The relay hung up; closing our side too (False)."""
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Whatever was still awaited will not come."""
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)

    def raise_if_lost(self) -> None:
        """Raise (a fresh copy of) why the connection ended, if it did."""
        if self.lost is not None:
            raise type(self.lost)(*self.lost.args) from self.lost.__cause__

    def _fail(self, error: aiosmtplib.SMTPException) -> None:
        if self.lost is None:
            self.lost = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> SMTPResponse:
        """The next reply in order; aiosmtplib's timeout and disconnect errors otherwise."""
        if not self.replies and self.lost is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # One timer per wait, not asyncio.wait_for's task and callbacks: this is the
            # hottest path of a pass.
            timer = loop.call_later(self.timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.replies:
            return self.replies.popleft()
        self.raise_if_lost()
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PipelinedSession:
    """Transactions as two writes each, over the transport aiosmtplib connected and hands over.

    From here on the client is not used for commands: its protocol no longer sees the replies.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        protocol = client.protocol
        assert protocol is not None and protocol.transport is not None
        self.client = client
        self.transport: asyncio.Transport = protocol.transport  # type: ignore[assignment]
        self.replies = Replies(timeout)
        self.size = client.supports_extension("size")
        self.transport.set_protocol(self.replies)

    @property
    def usable(self) -> bool:
        """Connected, and nothing arrived unasked (a relay's 421 before it hangs up)."""
        return (
            self.replies.lost is None
            and not self.replies.replies
            and not self.transport.is_closing()
        )

    def _write(self, data: bytes) -> None:
        self.replies.raise_if_lost()
        if self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def transaction(self, sender: str, recipient: str, data: bytes) -> SMTPResponse:
        """MAIL, RCPT, DATA in one write; then, once 354 came, the body."""
        size = f" SIZE={len(data)}" if self.size else ""
        self._write(f"MAIL FROM:<{sender}>{size}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        mail = await self.replies.next()
        rcpt = await self.replies.next()
        start = await self.replies.next()
        envelope_ok = mail.code == 250 and rcpt.code in (250, 251)
        if start.code == 354 and not envelope_ok:
            # RFC 2920 3.1: a relay may take DATA after refusing the envelope; an empty
            # message ends it, and its reply (554 no valid recipients) says nothing new.
            self._write(b".\r\n")
            await self.replies.next()
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
        if rcpt.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        self._write(wire_body(data))
        final = await self.replies.next()
        if final.code != 250:
            raise aiosmtplib.SMTPDataError(final.code, final.message)
        return final

    async def reset(self) -> None:
        """RSET."""
        self._write(b"RSET\r\n")
        reply = await self.replies.next()
        if reply.code != 250:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)

    async def quit(self) -> None:
        """QUIT, read the 221 (or not), close."""
        try:
            with contextlib.suppress(aiosmtplib.SMTPException):
                if self.usable:
                    self._write(b"QUIT\r\n")
                    await self.replies.next()
        finally:
            self.transport.close()
            self.client.close()  # aiosmtplib forgets the session it no longer owns


async def open_session(client: aiosmtplib.SMTP, reply_seconds: float) -> Session:
    """The session for a connected client: pipelined when the relay offers it."""
    if client.is_ehlo_or_helo_needed:
        # aiosmtplib says EHLO on its own only for STARTTLS or AUTH, else at the first MAIL.
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()  # an SMTP-only relay: no extensions, so no pipelining
    if client.supports_extension("pipelining"):
        return PipelinedSession(client, reply_seconds)
    return LockstepSession(client)
