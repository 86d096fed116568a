"""Planning one send: the progress rule picks the step, the composer builds the message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from delivery.compose import Composer
from delivery.transports import Envelope
from guide.lessons import Sequence
from guide.progress import next_step
from guide.records import Subscriber


@dataclass
class Job:
    """One subscriber's planned send (or a completion that needs no send)."""

    subscriber: Subscriber
    lesson_id: str
    message_id: str = ""
    envelope: Envelope | None = None
    sequence: Sequence | None = None
    final: bool = False  # the subscriber completes once this is delivered


def plan(
    composer: Composer,
    subscriber: Subscriber,
    recorded: list[str],
    sequences: dict[str, Sequence],
    now: datetime,
    *,
    closing_email: bool,
) -> Job:
    """Decide what this subscriber gets now and build the message bytes."""
    sequence = sequences.get(subscriber.sequence_id)
    if sequence is None:
        return Job(subscriber, "")
    step = next_step(sequence, recorded, closing_email=closing_email)
    if not step.send:
        return Job(subscriber, step.lesson_id, sequence=sequence, final=True)
    if step.closing:
        composed = composer.closing(subscriber, sequence, now)
    else:
        lesson = sequence.lessons[sequence.positions[step.lesson_id]]
        composed = composer.lesson(subscriber, sequence, lesson, now)
    return Job(
        subscriber, step.lesson_id, composed.message_id, composed.envelope, sequence, step.final
    )
