"""What the store reads and writes: subscribers, and the outcomes of sends."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import RowMapping


def normalize_email(address: str) -> str:
    """The form addresses are compared and stored in."""
    return address.strip().lower()


def email_hash(address: str) -> str:
    """What is kept of an erased address, to keep honouring its unsubscribe."""
    return hashlib.sha256(normalize_email(address).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Subscriber:
    """One subscriber row."""

    id: int
    sequence_id: str
    email: str | None
    name: str
    timezone: str
    send_time: str
    status: str
    discreet: bool
    country: str  # whose help lines the footer shows (guide.crisis); "" = not chosen
    generation: int
    repeats: int
    next_due_at: datetime | None
    last_sent_at: datetime | None
    attempts: int
    first_failure_at: datetime | None
    last_error: str | None
    created_at: datetime
    confirmed_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Subscriber:
        """Build from a row of `subscribers`."""
        return cls(**{name: row[name] for name in _SUBSCRIBER_FIELDS})


# Computed once: a claim builds a thousand of these per batch.
_SUBSCRIBER_FIELDS = tuple(f.name for f in fields(Subscriber))


@dataclass(frozen=True)
class NewSubscriber:
    """What is needed to add someone."""

    email: str
    sequence_id: str
    timezone: str
    send_time: str
    name: str = ""
    discreet: bool = False
    country: str = ""


@dataclass(frozen=True)
class Sent:
    """The relay answered 250: record the lesson and schedule the next one."""

    subscriber_id: int
    generation: int
    lesson_id: str
    message_id: str
    sent_at: datetime
    next_due_at: datetime | None
    completed: bool = False


@dataclass(frozen=True)
class Retry:
    """A transient failure: try again at `next_due_at`."""

    subscriber_id: int
    next_due_at: datetime
    attempts: int
    first_failure_at: datetime
    error: str


@dataclass(frozen=True)
class Stop:
    """Stop sending to this subscriber (bounced, held, undeliverable, completed)."""

    subscriber_id: int
    status: str
    error: str | None


Outcome = Sent | Retry | Stop
