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
import contextlib
import itertools
import logging
import pickle
import signal
import struct
import sys
from dataclasses import replace
from typing import Any

from delivery.transports.base import Envelope, SendResult, Status
from delivery.transports.smtp import SMTPTransport
from guide.config import Config
from guide.errors import TransportConfigError

log = logging.getLogger(__name__)
_HEADER = struct.Struct("!I")


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    header = await reader.readexactly(_HEADER.size)
    (size,) = _HEADER.unpack(header)
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child's pipe


def _frame(item: Any) -> bytes:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class ProcessTransport:
    """A transport whose connections live in one sender child process."""

    def __init__(self, config: Config) -> None:
        self.config = replace(config, dispatch=replace(config.dispatch, sender_process=False))
        self.name = f"{config.transport} (sender process)"
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._connections = itertools.count()
        self._lock = asyncio.Lock()

    async def _start(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._process is not None and self._process.returncode is None:
                return self._process
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "delivery.transports.process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdin is not None and process.stdout is not None
            # The configuration (secrets included) goes over the pipe, never on argv.
            process.stdin.write(_frame(self.config))
            self._process = process
            self._reader = asyncio.create_task(self._read(process.stdout))
            return process

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                request, ok, value = await _read_frame(stdout)
                future = self._pending.pop(request, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                elif value[0] == "config":
                    future.set_exception(TransportConfigError(value[1], value[2]))
                else:
                    future.set_exception(RuntimeError(f"sender process: {value[1]}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the sender process ended"))
            self._pending.clear()

    async def request(self, verb: str, connection: int, payload: Any) -> Any:
        """Send one request to the child and wait for its answer."""
        process = await self._start()
        assert process.stdin is not None
        request = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        process.stdin.write(_frame((request, verb, connection, payload)))
        await process.stdin.drain()
        return await future

    async def connect(self) -> ProcessConnection:
        """A connection in the child; it opens lazily there, as the inner transport's do."""
        number = next(self._connections)
        await self.request("open", number, None)
        return ProcessConnection(self, number)

    async def close(self) -> None:
        """Close the child's stdin and wait for it to finish what it was doing."""
        process, self._process = self._process, None
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 60)
        if process.returncode is None:
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader


class ProcessConnection:
    """One connection of a ProcessTransport."""

    def __init__(self, transport: ProcessTransport, number: int) -> None:
        self.transport = transport
        self.number = number

    async def send(self, envelope: Envelope) -> SendResult:
        """Send through the child; a dead child is a transient failure."""
        try:
            result: SendResult = await self.transport.request("send", self.number, envelope)
        except (ConnectionError, RuntimeError) as err:
            return SendResult(Status.TRANSIENT, None, str(err))
        return result

    async def close(self) -> None:
        """Close the child's connection; never raises."""
        with contextlib.suppress(ConnectionError, RuntimeError, TransportConfigError):
            await self.transport.request("close", self.number, None)


async def _child() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport_out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    config: Config = await _read_frame(reader)
    inner = SMTPTransport(config.smtp)  # only smtp runs in a sender process
    connections: dict[int, Any] = {}
    tasks: set[asyncio.Task[None]] = set()

    def answer(request: int, ok: bool, value: Any) -> None:
        transport_out.write(_frame((request, ok, value)))

    async def handle(request: int, verb: str, number: int, payload: Any) -> None:
        try:
            if verb == "open":
                connections[number] = await inner.connect()
                answer(request, True, None)
            elif verb == "send":
                answer(request, True, await connections[number].send(payload))
            else:
                connection = connections.pop(number, None)
                if connection is not None:
                    await connection.close()
                answer(request, True, None)
        except TransportConfigError as err:
            answer(request, False, ("config", err.key, err.message))
        except Exception as err:
            answer(request, False, ("error", f"{type(err).__name__}: {err}"))

    try:
        while True:
            request, verb, number, payload = await _read_frame(reader)
            task = asyncio.create_task(handle(request, verb, number, payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except asyncio.IncompleteReadError:
        pass  # the parent closed our stdin: finish what is in flight, then leave
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    for connection in connections.values():
        await connection.close()
    transport_out.close()


def main() -> None:
    """Entry point of the sender child process."""
    # The parent decides when to stop (stdin closes); a Ctrl-C or systemd's SIGTERM to the
    # whole group must not cut sends off underneath it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_child())


if __name__ == "__main__":
    main()
