"""A transport that keeps every message in a list: for tests and dry runs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from delivery.transports.base import Envelope, SendResult, Status


@dataclass
class MemoryTransport:
    """Stores sent envelopes in `outbox`; `script` queues results to return instead of 250."""

    name: str = "memory"
    outbox: list[Envelope] = field(default_factory=list)
    script: deque[SendResult] = field(default_factory=deque)

    async def connect(self) -> MemoryConnection:
        """A connection writing into this transport's outbox."""
        return MemoryConnection(self)

    async def close(self) -> None:
        """Nothing is held between connections."""


@dataclass
class MemoryConnection:
    """One connection of a MemoryTransport."""

    transport: MemoryTransport

    async def send(self, envelope: Envelope) -> SendResult:
        """Record the envelope, or return the next scripted failure."""
        if self.transport.script:
            result = self.transport.script.popleft()
            if not result.delivered:
                return result
        self.transport.outbox.append(envelope)
        return SendResult(Status.DELIVERED, 250, "2.0.0 Ok: kept in memory")

    async def close(self) -> None:
        """Nothing to close."""
