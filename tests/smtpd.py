"""A real SMTP server for tests (aiosmtpd): records what it receives, misbehaves on request.

Faults are scripted, not mocked: `server.script(...)` queues one `Fault` (or `None` for a
normal delivery) per message, taken when the message's MAIL FROM arrives and applied at the
stage it names. `server.greet(...)` queues replies that replace the 220 greeting of new
connections; `server.refuse_auth(...)` the replies to the next AUTH attempts. The server runs
in the test's own event loop (`start_smtp_server`, fixture `smtp_servers`) or, for a client in
another process, in a loop on a thread (`ThreadedSMTPServer`, fixture `threaded_smtp_servers`).
Test modules import the fixture they use (`from tests.smtpd import smtp_servers`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from guide.config import SMTPConfig, SMTPSecurity

HOST = "127.0.0.1"
Stage = Literal["MAIL", "RCPT", "DATA"]
Action = Literal["reply", "disconnect", "accept_then_close"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one message, applied when the message reaches `stage`."""

    stage: Stage
    action: Action = "reply"
    reply: str = ""

    @classmethod
    def reply_at(cls, stage: Stage, reply: str) -> Fault:
        """Answer `reply` (e.g. '550 5.1.1 No such user') instead of accepting the command."""
        return cls(stage, "reply", reply)

    @classmethod
    def disconnect_at(cls, stage: Stage = "DATA") -> Fault:
        """Close the connection without answering; at DATA, after the whole body has arrived."""
        return cls(stage, "disconnect")

    @classmethod
    def accept_then_close(cls) -> Fault:
        """Record the message, answer 250, then close the connection."""
        return cls("DATA", "accept_then_close")


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted with 250."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    session: int  # 1 for the first connection, 2 for the next …
    tls: bool
    login: str | None


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH exchange (never the password)."""

    mechanism: str
    login: str
    success: bool


@dataclass
class RecordingHandler:
    """aiosmtpd handler: keeps messages, commands and AUTH attempts; applies the script."""

    credentials: tuple[str, str] | None = None
    messages: list[ReceivedMessage] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)  # (session, verb)
    # (session, the first 512 bytes of each read): shows which commands came in one write.
    reads: list[tuple[int, bytes]] = field(default_factory=list)
    auth_attempts: list[AuthAttempt] = field(default_factory=list)
    script: deque[Fault | None] = field(default_factory=deque)
    greetings: deque[str] = field(default_factory=deque)
    auth_refusals: deque[str] = field(default_factory=deque)
    sessions: int = 0
    pipelining: bool = True  # advertised, as Postfix and the big providers do
    live: set[RecordingSMTP] = field(default_factory=set)  # connected sessions

    async def handle_EHLO(
        self,
        server: RecordingSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's EHLO lines, with PIPELINING (RFC 2920) before the last when offered.

        aiosmtpd reads commands one line at a time, so it serves pipelined ones in order; it
        only does not say so.
        """
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: RecordingSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Take this message's entry from the script, then accept the sender."""
        server.fault = self.script.popleft() if self.script else None
        refusal = await _apply(server, "MAIL")
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: RecordingSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept the recipient unless the script says otherwise."""
        refusal = await _apply(server, "RCPT")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: RecordingSMTP, session: Session, envelope: Envelope) -> str:
        """Record the message and answer 250, unless the script says otherwise."""
        fault = server.fault
        refusal = await _apply(server, "DATA")
        if refusal is not None:
            return refusal
        transport = server.transport
        assert transport is not None
        assert isinstance(envelope.original_content, bytes)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.messages.append(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.original_content,
                session=server.number,
                tls=transport.get_extra_info("ssl_object") is not None,
                login=login.decode() if login is not None else None,
            )
        )
        reply = f"250 2.0.0 Ok: queued as {len(self.messages)}"
        if fault is not None and fault.action == "accept_then_close":
            await server.push(reply)
            await _hang_up(server)
        return reply

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd authenticator: compare with the configured username and password."""
        assert isinstance(auth_data, LoginPassword)
        expected = self.credentials
        refusal = self.auth_refusals.popleft() if self.auth_refusals else None
        success = (
            refusal is None
            and expected is not None
            and (auth_data.login, auth_data.password)
            == (expected[0].encode(), expected[1].encode())
        )
        self.auth_attempts.append(
            AuthAttempt(mechanism, auth_data.login.decode(errors="replace"), success)
        )
        # handled=False: aiosmtpd answers `message`, or 535 when there is none.
        return AuthResult(
            success=success,
            handled=False,
            message=refusal,
            auth_data=auth_data if success else None,
        )

    def verbs(self, session: int | None = None) -> list[str]:
        """The commands received, in order, optionally of one session only."""
        return [verb for number, verb in self.commands if session in (None, number)]


async def _apply(server: RecordingSMTP, stage: Stage) -> str | None:
    """Carry out the message's fault if it belongs to `stage`; a reply to send, or None."""
    fault = server.fault
    if fault is None or fault.stage != stage or fault.action == "accept_then_close":
        return None
    server.fault = None
    if fault.action == "disconnect":
        await _hang_up(server)
    return fault.reply


async def _hang_up(server: SMTP) -> None:
    """Close the connection and wait: connection_lost cancels the session's task."""
    assert server.transport is not None
    server.transport.close()
    await server.loop.create_future()  # never resolves; cancelled with the session


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, numbering sessions, recording commands and replaying greetings."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler
        self.number = 0
        self.fault: Fault | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Number each new connection (STARTTLS calls this again on the same session)."""
        new_session = self.transport is None
        super().connection_made(transport)
        if new_session:
            self.recorder.sessions += 1
            self.number = self.recorder.sessions
            self.recorder.live.add(self)

    def data_received(self, data: bytes) -> None:
        """Note the start of each read, then let aiosmtpd's stream have it."""
        self.recorder.reads.append((self.number, data[:512]))
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        """Resolve `lost` so the server can wait for its sessions when it stops."""
        super().connection_lost(error)
        self.recorder.live.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # Every command passes here; keep only its verb, since AUTH arguments hold secrets.
        # EHLO only passes since the handler has a hook for it, so it is left out.
        if command != "EHLO":
            self.recorder.commands.append((self.number, command))
        return await super()._call_handler_hook(command, *args)

    async def _handle_client(self) -> None:
        if self.recorder.greetings:
            await self.push(self.recorder.greetings.popleft())
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class TLSAuthority:
    """A throwaway CA (trustme) with its PEM in a file, and a certificate for 127.0.0.1."""

    def __init__(self, directory: Path, name: str = "ca.pem") -> None:
        self.ca = trustme.CA()
        self.ca_file = directory / name
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.certificate = self.ca.issue_cert(HOST, "localhost")

    def server_context(self) -> ssl.SSLContext:
        """The server side: presents the certificate, asks nothing of the client."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.certificate.configure_cert(context)
        return context


@dataclass
class SMTPServer:
    """A running server: where it listens, what it received, and how to reach it."""

    host: str
    port: int
    handler: RecordingHandler
    tls: TLSAuthority | None
    starttls: bool
    implicit_tls: bool
    listener: asyncio.Server

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages accepted with 250, in order."""
        return self.handler.messages

    def script(self, *faults: Fault | None) -> None:
        """Queue one entry per coming message: a Fault, or None to deliver normally."""
        self.handler.script.extend(faults)

    def greet(self, *replies: str) -> None:
        """Replace the 220 greeting of the next connections with `replies`, then hang up."""
        self.handler.greetings.extend(replies)

    def refuse_auth(self, *replies: str) -> None:
        """Answer the next AUTH attempts with `replies` ('454 4.7.0 …'), whatever the password."""
        self.handler.auth_refusals.extend(replies)

    def smtp_config(self, **changes: Any) -> SMTPConfig:
        """An SMTPConfig for this server (CA trusted, credentials set); `changes` override."""
        security: SMTPSecurity = (
            "tls" if self.implicit_tls else "starttls" if self.starttls else "none"
        )
        username, password = self.handler.credentials or ("", "")
        config = SMTPConfig(
            host=self.host,
            port=self.port,
            security=security,
            username=username,
            password=password,
            timeout=10.0,
            ca_file=str(self.tls.ca_file) if self.tls else "",
            local_hostname="client.test",
        )
        return dataclasses.replace(config, **changes)

    async def stop(self) -> None:
        """Stop listening, hang up on every open session and wait for them to end."""
        self.listener.close()
        await self.listener.wait_closed()
        sessions = list(self.handler.live)
        for session in sessions:
            if session.transport is not None:
                session.transport.close()
        await asyncio.gather(*(session.lost for session in sessions))
        tasks = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_smtp_server(
    *,
    tls: TLSAuthority | None = None,
    starttls: bool = False,
    implicit_tls: bool = False,
    credentials: tuple[str, str] | None = None,
    mechanisms: Iterable[str] = ("LOGIN", "PLAIN"),
    pipelining: bool = True,
) -> SMTPServer:
    """Listen on 127.0.0.1, a free port, in the running loop.

    `starttls` offers STARTTLS, `implicit_tls` speaks TLS from the first byte (both need
    `tls`). With `credentials`, AUTH is required before MAIL and, as aiosmtpd defaults, only
    offered over TLS. `pipelining=False` leaves PIPELINING out of the EHLO reply.
    """
    if (starttls or implicit_tls) and tls is None:
        raise ValueError("starttls and implicit_tls need a TLSAuthority")
    loop = asyncio.get_running_loop()
    handler = RecordingHandler(credentials, pipelining=pipelining)
    excluded = {"LOGIN", "PLAIN"} - {m.upper() for m in mechanisms}

    def session() -> RecordingSMTP:
        return RecordingSMTP(
            handler,
            hostname="smtp.test",
            tls_context=tls.server_context() if starttls and tls else None,
            auth_required=credentials is not None,
            authenticator=handler.authenticate,
            auth_exclude_mechanism=excluded,
            loop=loop,
        )

    context = tls.server_context() if implicit_tls and tls else None
    listener = await loop.create_server(session, HOST, 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    return SMTPServer(HOST, port, handler, tls, starttls, implicit_tls, listener)


class ThreadedSMTPServer:
    """`start_smtp_server` in an event loop on its own thread, for clients in a subprocess."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtpd", daemon=True)
        self.server: SMTPServer | None = None

    def __enter__(self) -> SMTPServer:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(start_smtp_server(**self.options), self.loop)
        self.server = started.result(timeout=10)
        return self.server

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


class SMTPServers:
    """Starts servers for one test and stops them all afterwards; shares one CA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._authority: TLSAuthority | None = None
        self.pipelining = True  # what start() offers unless told
        self._running: list[SMTPServer] = []

    @property
    def authority(self) -> TLSAuthority:
        """The CA every TLS server of this test uses (made on first use)."""
        if self._authority is None:
            self._authority = TLSAuthority(self.directory)
        return self._authority

    def untrusted_ca_file(self) -> Path:
        """The PEM of a different CA: a client trusting only it must reject our servers."""
        return TLSAuthority(self.directory, "other-ca.pem").ca_file

    def _options(
        self, starttls: bool, implicit_tls: bool, credentials: tuple[str, str] | None, **rest: Any
    ) -> dict[str, Any]:
        tls = self.authority if starttls or implicit_tls else None
        return {
            "tls": tls,
            "starttls": starttls,
            "implicit_tls": implicit_tls,
            "credentials": credentials,
            **rest,
        }

    async def start(
        self,
        *,
        starttls: bool = False,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        mechanisms: Iterable[str] = ("LOGIN", "PLAIN"),
        pipelining: bool | None = None,
    ) -> SMTPServer:
        """A server in the running loop, stopped by `aclose()`; PIPELINING as `self.pipelining`."""
        offer = self.pipelining if pipelining is None else pipelining
        server = await start_smtp_server(
            **self._options(
                starttls, implicit_tls, credentials, mechanisms=mechanisms, pipelining=offer
            )
        )
        self._running.append(server)
        return server

    def threaded(
        self,
        *,
        starttls: bool = False,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> ThreadedSMTPServer:
        """A server on its own thread; use it as a context manager."""
        return ThreadedSMTPServer(**self._options(starttls, implicit_tls, credentials))

    async def aclose(self) -> None:
        """Stop every server started with `start`."""
        for server in self._running:
            await server.stop()
        self._running.clear()


@pytest.fixture
async def smtp_servers(tmp_path: Path) -> AsyncIterator[SMTPServers]:
    """Start in-loop SMTP servers with `await smtp_servers.start(...)`."""
    async with _servers(tmp_path, pipelining=True) as servers:
        yield servers


@pytest.fixture(params=[True, False], ids=["pipelining", "lockstep"])
async def both_kinds_of_relay(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SMTPServers]:
    """`smtp_servers`, once offering PIPELINING and once not: the client has a path for each."""
    async with _servers(tmp_path, pipelining=request.param) as servers:
        yield servers


@asynccontextmanager
async def _servers(tmp_path: Path, *, pipelining: bool) -> AsyncIterator[SMTPServers]:
    servers = SMTPServers(tmp_path)
    servers.pipelining = pipelining
    try:
        yield servers
    finally:
        await servers.aclose()


@pytest.fixture
def threaded_smtp_servers(tmp_path: Path) -> SMTPServers:
    """Start threaded SMTP servers with `with threaded_smtp_servers.threaded(...) as server`."""
    return SMTPServers(tmp_path)
