"""The progress rule: which lesson a subscriber gets next, kept by lesson id (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from guide.lessons import Sequence

# Not a valid lesson slug, so it can never collide with a lesson id.
CLOSING_ID = "_closing"


def choose_next(
    order: Seq[str], recorded: Seq[str], position: Mapping[str, int] | None = None
) -> str | None:
    """The first unrecorded lesson after the last recorded one still in `order`."""
    if position is None:
        position = {lesson_id: i for i, lesson_id in enumerate(order)}
    start = 0
    for lesson_id in reversed(recorded):
        if lesson_id in position:
            start = position[lesson_id] + 1
            break
    if not recorded:
        return order[0] if order else None
    done = set(recorded)
    return next((lesson_id for lesson_id in order[start:] if lesson_id not in done), None)


@dataclass(frozen=True)
class Step:
    """What a subscriber gets now: a lesson, the closing email, or nothing (they complete)."""

    lesson_id: str  # a lesson id, or CLOSING_ID for the closing email and for completion
    send: bool  # False: nothing to send, the subscriber simply completes
    final: bool  # the subscriber completes once this is delivered

    @property
    def closing(self) -> bool:
        """Whether this is the closing email (or completion after it)."""
        return self.lesson_id == CLOSING_ID


def next_step(sequence: Sequence, recorded: Seq[str], *, closing_email: bool) -> Step:
    """The one rule for what comes next, used by dispatch, dry runs and the pages alike."""
    order = sequence.order
    lesson_id = choose_next(order, recorded, sequence.positions)
    if lesson_id is None:
        send = closing_email and CLOSING_ID not in recorded
        return Step(CLOSING_ID, send=send, final=True)
    # Without a closing email, the last lesson itself completes the sequence.
    final = (
        not closing_email and choose_next(order, [*recorded, lesson_id], sequence.positions) is None
    )
    return Step(lesson_id, send=True, final=final)


def finished(sequence: Sequence, recorded: Seq[str]) -> bool:
    """Whether every lesson in the current order has been sent or skipped."""
    return choose_next(sequence.order, recorded, sequence.positions) is None


def lessons_sent(recorded: Seq[str]) -> int:
    """How many lessons (not the closing email) are recorded."""
    return sum(1 for lesson_id in recorded if lesson_id != CLOSING_ID)
