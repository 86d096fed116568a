"""Planning one send: the progress rule picks the step, the composer builds the message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from delivery.compose import Composed, Composer
from guide.lessons import Sequence
from guide.progress import next_step
from guide.records import Subscriber


@dataclass
class Job:
    """One subscriber's planned send (or a completion that needs no send).

    `build(when)` makes the message bytes, dated `when`: the sender calls it at the moment of
    hand-over, since a rate-limited pass can run for hours and the Date must not be its start.
    """

    subscriber: Subscriber
    lesson_id: str
    message_id: str = ""
    build: Callable[[datetime], Composed] | None = None
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
    """Decide what this subscriber gets now, and how to build its message."""
    sequence = sequences.get(subscriber.sequence_id)
    if sequence is None:
        return Job(subscriber, "")
    step = next_step(sequence, recorded, closing_email=closing_email)
    if not step.send:
        return Job(subscriber, step.lesson_id, sequence=sequence, final=True)
    # Known now (it is derived, never random), so the send does not derive it a second time.
    message_id = composer.message_id(subscriber, step.lesson_id)
    if step.closing:
        build = partial(composer.closing, subscriber, sequence, message_id=message_id)
    else:
        lesson = sequence.lessons[sequence.positions[step.lesson_id]]
        build = partial(composer.lesson, subscriber, sequence, lesson, message_id=message_id)
    return Job(subscriber, step.lesson_id, message_id, build, sequence, step.final)
