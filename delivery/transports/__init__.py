"""Transports: one module per way of handing a message on (smtp, maildir, memory)."""

from __future__ import annotations

from delivery.transports.base import Connection, Envelope, SendResult, Status, Transport, classify
from delivery.transports.maildir import MaildirTransport
from delivery.transports.memory import MemoryTransport
from delivery.transports.smtp import SMTPTransport
from guide.config import Config


def make_transport(config: Config) -> Transport:
    """The transport the configuration names."""
    if config.transport == "smtp":
        if config.dispatch.sender_process:
            from delivery.transports.process import ProcessTransport

            return ProcessTransport(config)
        return SMTPTransport(config.smtp)
    if config.transport == "memory":
        return MemoryTransport()
    return MaildirTransport(config.maildir_path)


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
    "make_transport",
]
