"""Transports: one module per way of handing a message on (smtp, maildir, memory)."""

from __future__ import annotations

from delivery.transports.base import Connection, Envelope, SendResult, Status, Transport, classify
from delivery.transports.maildir import MaildirTransport
from delivery.transports.memory import MemoryTransport
from delivery.transports.smtp import SMTPTransport

__all__ = [
    "Connection",
    "Envelope",
    "MaildirTransport",
    "MemoryTransport",
    "SMTPTransport",
    "SendResult",
    "Status",
    "Transport",
    "classify",
]
