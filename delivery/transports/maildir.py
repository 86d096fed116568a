"""A transport that writes each message as an .eml file into a Maildir: the embedded default."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from delivery.transports.base import Envelope, SendResult, Status


@dataclass
class MaildirTransport:
    """Delivers into `<root>/new` through `<root>/tmp`, as the Maildir convention requires."""

    root: Path
    name: str = "maildir"
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def ensure(self) -> None:
        """Create cur/, new/ and tmp/ (private to the service user)."""
        for sub in ("cur", "new", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    async def connect(self) -> MaildirConnection:
        """A connection; the folders are created on first use."""
        self.ensure()
        return MaildirConnection(self)

    async def close(self) -> None:
        """Nothing is held between connections."""

    def unique_name(self) -> str:
        """time.pid_counter.host.eml: unique across processes and machines sharing the folder."""
        host = socket.gethostname().replace("/", "_").replace(":", "_")
        return f"{time.time_ns()}.P{os.getpid()}Q{next(self._counter)}.{host}.eml"

    def write(self, envelope: Envelope) -> Path:
        """Write to tmp/, fsync, then rename into new/: a reader never sees half a message."""
        name = self.unique_name()
        temporary = self.root / "tmp" / name
        final = self.root / "new" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # The envelope sender, as a delivering MTA records it: where a bounce would go.
        return_path = f"Return-Path: <{envelope.sender}>\r\n".encode("ascii", "replace")
        try:
            os.writev(fd, (return_path, envelope.data))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, final)
        # The rename lives in the directory: sync it too, or a power cut could lose the file.
        directory = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return final


@dataclass
class MaildirConnection:
    """One connection of a MaildirTransport."""

    transport: MaildirTransport

    async def send(self, envelope: Envelope) -> SendResult:
        """Write the message; a full disk is a transient failure, as a relay's 452 would be."""
        try:
            path = await asyncio.to_thread(self.transport.write, envelope)
        except OSError as err:
            return SendResult(Status.TRANSIENT, None, f"maildir write failed: {err.strerror}")
        return SendResult(Status.DELIVERED, 250, f"2.0.0 Ok: {path.name}")

    async def close(self) -> None:
        """Nothing to close."""
