"""Every kind of email the service sends, built by the real composer for stored subscribers.

Lessons of every sequence in both modes, the closing email in both modes, the confirmation
(always discreet) and a send-test sample in both modes: the mail tests check them all.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from cli.lessons import render_sample
from delivery.transports import MemoryTransport
from guide.config import Config
from guide.lessons import Lesson, Sequence
from guide.records import NewSubscriber, Subscriber
from scheduler import subscribers as life
from tests.harness import Clock, config_for, make_parts
from wiring import Parts

START = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)
KINDS = ("lesson", "closing", "confirm", "send-test")


@dataclass(frozen=True)
class Built:
    """One finished message and what it was built from."""

    kind: str  # one of KINDS
    discreet: bool
    sequence: Sequence
    lesson: Lesson | None  # None for closing and confirm
    data: bytes

    @property
    def label(self) -> str:
        """'lesson no-contact/smear-campaigns (discreet)', for failure messages."""
        what = f"{self.sequence.id}/{self.lesson.id}" if self.lesson else self.sequence.id
        return f"{self.kind} {what} ({'discreet' if self.discreet else 'normal'})"

    @property
    def message(self) -> EmailMessage:
        """The parsed message."""
        return parse(self.data)

    @property
    def text(self) -> str:
        """The decoded text/plain part."""
        return part(self.message, "plain")

    @property
    def html(self) -> str:
        """The decoded text/html part."""
        return part(self.message, "html")


def parse(data: bytes) -> EmailMessage:
    """Message bytes parsed with the modern policy."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, subtype: str) -> str:
    """The decoded text/`subtype` part, with \\n line ends."""
    body = message.get_body((subtype,))
    assert body is not None, f"no text/{subtype} part"
    content = body.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


async def add(parts: Parts, sequence: Sequence, *, discreet: bool, status: str) -> Subscriber:
    """A stored subscriber of `sequence` (a distinct address per call)."""
    label = f"{sequence.id}-{'quiet' if discreet else 'plain'}-{status}"
    new = NewSubscriber(
        email=f"{label}@example.org",
        sequence_id=sequence.id,
        timezone="UTC",
        send_time="06:00",
        name="Sam",
        discreet=discreet,
    )
    sub, _ = await life.add(
        parts.store, new, now=START - timedelta(days=1), actor="test", status=status
    )
    return sub


async def build_all(parts: Parts) -> list[Built]:
    """Every kind of message for every sequence, through the composer dispatch uses."""
    composer = parts.composer
    built: list[Built] = []
    for sequence in parts.library.current().values():
        for discreet in (False, True):
            sub = await add(parts, sequence, discreet=discreet, status="active")
            for lesson in sequence.lessons:
                data = composer.lesson(sub, sequence, lesson, START).data
                built.append(Built("lesson", discreet, sequence, lesson, data))
            closing = composer.closing(sub, sequence, START).data
            built.append(Built("closing", discreet, sequence, None, closing))
            # What `send-test` sends: the same function, with the deployment's own signer.
            sample = render_sample(
                parts.config, sequence, 1, composer.signer, discreet=discreet, now=START
            )
            built.append(Built("send-test", discreet, sequence, sample.lesson, sample.data))
        pending = await add(parts, sequence, discreet=False, status="pending")
        confirm = composer.confirmation(pending, sequence, START).data
        built.append(Built("confirm", True, sequence, None, confirm))
    return built


def every_message(tmp_path: Path, config: Config | None = None) -> list[Built]:
    """build_all() on a fresh SQLite state in tmp_path, from synchronous code."""

    async def run() -> list[Built]:
        parts = await make_parts(config or config_for(tmp_path), Clock(START), MemoryTransport())
        try:
            return await build_all(parts)
        finally:
            await parts.close()

    return asyncio.run(run())


_URL = re.compile(r"https?://[^\s<>\"')]+")


def urls(text: str) -> list[str]:
    """The http(s) URLs in `text`."""
    return _URL.findall(text)
