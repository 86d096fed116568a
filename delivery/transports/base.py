"""The transport interface: open a connection, send an envelope, get a classified result."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """What goes over SMTP: the envelope sender, one recipient, and the message bytes."""

    sender: str
    recipient: str
    data: bytes


class Status(enum.Enum):
    """What happened to one message."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"  # try again later (4xx, timeout, dropped connection)
    PERMANENT = "permanent"  # the relay refused for good (5xx)


_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send, with the relay's reply when there was one."""

    status: Status
    code: int | None = None
    reply: str = ""

    @property
    def enhanced(self) -> str:
        """The RFC 3463 enhanced status code at the start of the reply ('5.1.1'), or ''."""
        match = _ENHANCED.match(self.reply.strip())
        return ".".join(match.groups()) if match else ""

    @property
    def delivered(self) -> bool:
        """Whether the relay accepted the message (250)."""
        return self.status is Status.DELIVERED

    @property
    def failure_class(self) -> str:
        """delivered, transient, bounced (no such mailbox) or held (policy or anything else)."""
        if self.status is Status.DELIVERED:
            return "delivered"
        if self.status is Status.TRANSIENT:
            return "transient"
        enhanced = self.enhanced
        # 5.1.x: the address does not exist; 5.2.1: the mailbox is disabled. Both are final.
        if enhanced.startswith("5.1.") or enhanced == "5.2.1":
            return "bounced"
        # 5.7.x and unexplained 5xx: hold the subscriber for an operator, never drop silently.
        return "held"

    def __str__(self) -> str:
        code = f"{self.code} " if self.code else ""
        return f"{self.status.value}: {code}{self.reply}".strip()


def classify(code: int, reply: str) -> SendResult:
    """Turn an SMTP reply into a SendResult."""
    if 200 <= code < 300:
        status = Status.DELIVERED
    elif 400 <= code < 500:
        status = Status.TRANSIENT
    else:
        status = Status.PERMANENT
    return SendResult(status, code, " ".join(reply.split()))


class Connection(Protocol):
    """One long-lived channel to the relay; one worker uses it at a time."""

    async def send(self, envelope: Envelope) -> SendResult:
        """Send one message and say what happened. Raises TransportConfigError only."""

    async def close(self) -> None:
        """Quit politely; never raises."""


class Transport(Protocol):
    """Makes connections; configured once at start."""

    name: str

    async def connect(self) -> Connection:
        """A new connection (opened lazily on first send where that makes sense)."""

    async def close(self) -> None:
        """Release whatever the transport holds beyond its connections; never raises."""
