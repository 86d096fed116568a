"""Run a transport in a child process, so sending and the dispatch pass use two cores.

The dispatch pass (claims, rendering, commits) and the SMTP conversations each keep one core
busy at high volume; Python runs one thread at a time, so the SMTP side moves to a sender
process. The parent talks to it over pipes: length-prefixed pickles of (request id, verb,
connection, payload). The child ignores SIGINT and SIGTERM and exits when its stdin closes,
so a graceful stop of the parent lets in-flight sends finish, and a killed parent takes the
child down with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import sys
from dataclasses import replace
from typing import Any

from delivery.transports.base import Envelope, SendResult, Status
from delivery.transports.process_child import frame, read_frame
from guide.config import Config
from guide.errors import TransportConfigError

log = logging.getLogger(__name__)


class SenderProcessError(ConnectionError):
    """The sender child died or stopped answering; what was in flight there is transient."""


# A send is at most about ten relay round trips (connect, greeting, EHLO, STARTTLS, EHLO
# again, AUTH, MAIL, RCPT, DATA and its end, RSET or QUIT), each bounded by smtp.timeout. A
# child silent for longer than all of them together is stuck, not slow.
_TIMEOUT_ROUND_TRIPS = 12
# After its pipe closes, how long a child may take to exit before it is killed.
_EXIT_SECONDS = 5.0
# At a graceful stop, how long in-flight sends may take to finish.
_CLOSE_SECONDS = 60.0


def _how_it_ended(returncode: int | None) -> str:
    if returncode is None:
        return "closed its pipe"
    if returncode < 0:
        return f"died (signal {-returncode})"
    return f"exited (status {returncode})"


class _Child:
    """One sender child process: its pipes, its unanswered requests, and whether it lives.

    Each start of the child makes a new _Child, so a connection remembers which one it was
    opened in: a connection number the current child never opened is reopened there first.
    """

    def __init__(self, process: asyncio.subprocess.Process, timeout: float) -> None:
        self.process = process
        self.timeout = timeout  # for one answer, from the request's write
        self.pending: dict[int, asyncio.Future[Any]] = {}
        # (deadline, request) in the order written, so the oldest unanswered is at the left.
        self.deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self.ids = itertools.count()
        # Set the moment the child's stdout ends: the return code comes later (the child
        # watcher reaps it asynchronously), and until then `returncode is None` lies.
        self.gone = asyncio.Event()
        self.closing = False
        self.killed_because = ""
        self.failure = "the sender process ended"
        assert process.stdout is not None
        self.reader = asyncio.create_task(self._read(process.stdout))
        self.watchdog = asyncio.create_task(self._watch())

    @property
    def alive(self) -> bool:
        """Whether requests can still be answered."""
        # The stdin pipe can break (the child was killed) before its stdout ends: a request
        # written then would only be counted by asyncio, which warns after a few of them.
        stdin = self.process.stdin
        return (
            not self.gone.is_set()
            and self.process.returncode is None
            and not (stdin is None or stdin.is_closing())
        )

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                request, ok, value = await read_frame(stdout)
                future = self.pending.pop(request, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                elif value[0] == "config":
                    future.set_exception(TransportConfigError(value[1], value[2]))
                else:
                    future.set_exception(RuntimeError(f"sender process: {value[1]}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child's end of the pipe closed: it exited, or was killed
        except Exception:
            # A garbled answer means we can no longer tell which request it belongs to.
            log.exception("unreadable answer from the sender process %d", self.process.pid)
            self.kill("sent an unreadable answer")
        finally:
            in_flight = self._end()
        await self._reap(in_flight)

    def _end(self) -> int:
        """Mark the child gone and fail every request still waiting for it; how many there were."""
        # One synchronous step: a request either registered before this (and fails here) or
        # sees `gone` set and fails at once, so none can wait for an answer that never comes.
        self.gone.set()
        self.watchdog.cancel()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SenderProcessError(self.failure))
        return len(pending)

    async def _watch(self) -> None:
        """Kill the child when its oldest unanswered request is older than the timeout."""
        # The last line of defence: a stopped or wedged child must not hold the pass. One
        # watchdog, not a timer per request: the request path is the hottest in a pass.
        loop = asyncio.get_running_loop()
        deadlines = self.deadlines
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now = loop.time()
            while deadlines and deadlines[0][1] not in self.pending:
                deadlines.popleft()  # answered
            if deadlines and deadlines[0][0] <= now:
                self.failure = f"the sender process did not answer in {self.timeout:g} s"
                self.kill(f"did not answer within {self.timeout:g} s")
                return

    async def _reap(self, in_flight: int) -> None:
        if self.closing:
            return  # close() waits for the exit itself
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), _EXIT_SECONDS)
            except TimeoutError:
                self.kill("did not exit after closing its pipe")
                await self.process.wait()
        if self.closing:
            return
        how = self.killed_because or _how_it_ended(self.process.returncode)
        log.error(
            "sender process %d %s; %d requests in flight fail as transient; "
            "starting a new one for the next send",
            self.process.pid,
            how,
            in_flight,
        )

    def kill(self, reason: str) -> None:
        """Kill the child (its reader then fails what is in flight); `reason` goes in the log."""
        if not self.killed_because:
            self.killed_because = f"was killed: it {reason}"
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def request(self, verb: str, connection: int, payload: Any) -> Any:
        """Send one request and wait for its answer; SenderProcessError if the child is gone."""
        if not self.alive:
            raise SenderProcessError(self.failure)
        stdin = self.process.stdin
        assert stdin is not None
        request = next(self.ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending[request] = future
        self.deadlines.append((loop.time() + self.timeout, request))
        try:
            stdin.write(frame((request, verb, connection, payload)))
            await stdin.drain()  # waits only while the pipe is full
            return await future
        except ConnectionError as err:  # the pipe broke under drain()
            if isinstance(err, SenderProcessError):
                raise
            raise SenderProcessError(f"the sender process ended: {err}") from err
        finally:
            self.pending.pop(request, None)
            if not future.done():
                future.cancel()  # nobody would read a late exception set on it
            elif not future.cancelled():
                future.exception()  # failed as we left: mark its exception as seen

    async def close(self) -> None:
        """Close the child's stdin and wait for it to finish its in-flight sends and exit."""
        self.closing = True
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), _CLOSE_SECONDS)
            if self.process.returncode is None:
                self.kill("did not finish within the time allowed at shutdown")
                await self.process.wait()
        await self.reader
        with contextlib.suppress(asyncio.CancelledError):
            await self.watchdog


class ProcessTransport:
    """A transport whose connections live in one sender child process, restarted if it dies."""

    def __init__(self, config: Config) -> None:
        self.config = replace(config, dispatch=replace(config.dispatch, sender_process=False))
        self.name = f"{config.transport} (sender process)"
        self.timeout = config.smtp.timeout * _TIMEOUT_ROUND_TRIPS
        self._child: _Child | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._connections = itertools.count()
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The process id of the running sender child, or None when none runs."""
        child = self._child
        return child.process.pid if child is not None and child.alive else None

    async def child(self) -> _Child:
        """The running sender child; a new one if there is none or the last one died."""
        async with self._lock:
            if self._child is not None and self._child.alive:
                return self._child
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "delivery.transports.process_child",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            except OSError as err:
                raise SenderProcessError(f"cannot start the sender process: {err}") from err
            assert process.stdin is not None
            # The smtp section (secrets included) goes over the pipe, never on argv.
            process.stdin.write(frame(dataclasses.asdict(self.config.smtp)))
            child = self._child = _Child(process, self.timeout)
            self._readers.add(child.reader)
            child.reader.add_done_callback(self._readers.discard)
            return child

    async def connect(self) -> ProcessConnection:
        """A connection; it opens in the child on its first send, as the inner transport's do."""
        return ProcessConnection(self, next(self._connections))

    async def close(self) -> None:
        """Close the child's stdin and wait for it to finish what it was doing."""
        child, self._child = self._child, None
        if child is not None:
            await child.close()
        # Children that died earlier may still be being reaped; let that finish.
        await asyncio.gather(*self._readers, return_exceptions=True)


class ProcessConnection:
    """One connection of a ProcessTransport; it takes `depth` sends at once.

    The child sends them one after another over the connection's SMTP session, so the next
    message is already there when the relay answers the current one.
    """

    depth = 2

    def __init__(self, transport: ProcessTransport, number: int) -> None:
        self.transport = transport
        self.number = number
        self._opened_in: _Child | None = None
        self._opening = asyncio.Lock()

    async def _child(self) -> _Child:
        child = await self.transport.child()
        if child is self._opened_in:
            return child
        async with self._opening:  # the other sender of this connection may be opening it
            child = await self.transport.child()
            if child is not self._opened_in:
                # First send, or the child it was opened in died: open it in this one.
                await child.request("open", self.number, None)
                self._opened_in = child
        return child

    async def send(self, envelope: Envelope) -> SendResult:
        """Send through the child; a dead or stuck child is a transient failure."""
        try:
            child = await self._child()
            result: SendResult = await child.request("send", self.number, envelope)
        except (ConnectionError, RuntimeError) as err:
            return SendResult(Status.TRANSIENT, None, str(err))
        return result

    async def close(self) -> None:
        """Close the child's connection, if the child it was opened in still runs; never raises."""
        child, self._opened_in = self._opened_in, None
        if child is None or not child.alive:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, TransportConfigError):
            await child.request("close", self.number, None)
