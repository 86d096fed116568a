"""The sender child process: SMTP connections on behalf of a ProcessTransport in the parent.

Requests come in on stdin and answers go out on stdout, as length-prefixed pickles: the
smtp section's values first (a plain dict: see `_smtp_settings`), then (request id, verb,
connection, payload) for open, send and close; each answer is (request id, ok, value). The
child ignores SIGINT and SIGTERM and exits when its stdin closes, once what it was given is
done.
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import struct
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from delivery.transports.smtp import SMTPTransport
from guide import eventloop
from guide.errors import TransportConfigError

if TYPE_CHECKING:
    from guide.config import SMTPConfig

_HEADER = struct.Struct("!I")


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next length-prefixed pickle on a pipe."""
    header = await reader.readexactly(_HEADER.size)
    (size,) = _HEADER.unpack(header)
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child's pipe


def frame(item: Any) -> bytes:
    """`item` as a length-prefixed pickle."""
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Sender:
    """The child's side: one queue and one task per connection, answers in the order done.

    A connection's requests (open, sends, close) run one after another on its own task, so a
    connection can have the next message waiting while the relay answers the current one.
    """

    def __init__(self, inner: SMTPTransport, out: asyncio.WriteTransport) -> None:
        self.inner = inner
        self.out = out
        self.queues: dict[int, asyncio.Queue[tuple[int, str, Any] | None]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def take(self, request: int, verb: str, number: int, payload: Any) -> None:
        """Queue one request on its connection's task (started by the first request)."""
        queue = self.queues.get(number)
        if queue is None:
            queue = self.queues[number] = asyncio.Queue()
            self.tasks.append(asyncio.create_task(self._serve(queue)))
        queue.put_nowait((request, verb, payload))
        if verb == "close":
            del self.queues[number]
            queue.put_nowait(None)

    async def finish(self) -> None:
        """Let every connection finish what it was given, then close it."""
        for queue in self.queues.values():
            queue.put_nowait(None)
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, queue: asyncio.Queue[tuple[int, str, Any] | None]) -> None:
        connection: Any = None
        try:
            while (item := await queue.get()) is not None:
                request, verb, payload = item
                try:
                    if verb == "open":
                        connection = await self.inner.connect()
                        value: Any = None
                    elif verb == "send":
                        value = await connection.send(payload)
                    else:
                        value = None
                        if connection is not None:
                            await connection.close()
                            connection = None
                except TransportConfigError as err:
                    self._answer(request, False, ("config", err.key, err.message))
                except Exception as err:
                    self._answer(request, False, ("error", f"{type(err).__name__}: {err}"))
                else:
                    self._answer(request, True, value)
        finally:
            if connection is not None:
                await connection.close()

    def _answer(self, request: int, ok: bool, value: Any) -> None:
        # A parent killed outright closes our stdout under us; nobody is left to answer.
        if not self.out.is_closing():
            self.out.write(frame((request, ok, value)))


def _smtp_settings(values: dict[str, Any]) -> SMTPConfig:
    """The smtp section the parent validated, as attributes, without importing guide.config.

    The configuration's models (pydantic, every section's rules) are 15 MB of this process's
    40; a sender needs only the values, already checked in the parent.
    """
    return cast("SMTPConfig", SimpleNamespace(**values))


async def _child() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport_out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    sender = _Sender(SMTPTransport(_smtp_settings(await read_frame(reader))), transport_out)
    try:
        while True:
            sender.take(*await read_frame(reader))
    except asyncio.IncompleteReadError:
        pass  # the parent closed our stdin: finish what is in flight, then leave
    await sender.finish()
    transport_out.close()


def main() -> None:
    """Entry point of the sender child process."""
    # The parent decides when to stop (stdin closes); a Ctrl-C or systemd's SIGTERM to the
    # whole group must not cut sends off underneath it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    eventloop.install()
    asyncio.run(_child())


if __name__ == "__main__":
    main()
