"""The progress rule: which lesson a subscriber gets next, kept by lesson id (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from guide.lessons import Sequence

# Not a valid lesson slug, so it can never collide with a lesson id.
CLOSING_ID = "_closing"


def choose_next(
    order: Seq[str],
    recorded: Seq[str],
    position: Mapping[str, int] | None = None,
    catch_up: Seq[str] = (),
) -> str | None:
    """The next lesson id: a passed but missed catch-up lesson, else the next one in order.

    In order means the first unrecorded lesson after the last recorded one still in `order`.
    A `catch_up` lesson (in list order) comes first if the reader is already past it but never
    had it, such as a safety lesson inserted before where they were.
    """
    if position is None:
        position = {lesson_id: i for i, lesson_id in enumerate(order)}
    if not recorded:
        return order[0] if order else None
    catching = set(catch_up)
    start = 0
    furthest = -1
    for lesson_id in recorded:
        if lesson_id not in position:
            continue
        at = position[lesson_id]
        # A catch-up lesson sent behind where the reader was does not move them back: going on
        # from it would send the days between it and their place, which they had passed.
        if lesson_id not in catching or at > furthest:
            start = at + 1
        furthest = max(furthest, at)
    done = set(recorded)
    for lesson_id in catch_up:
        if position.get(lesson_id, start) < start and lesson_id not in done:
            return lesson_id
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


def next_lesson(sequence: Sequence, recorded: Seq[str]) -> str | None:
    """The id of the lesson `sequence` gives next after `recorded`, or None when it is done."""
    return choose_next(sequence.order, recorded, sequence.positions, sequence.catch_up)


def next_step(sequence: Sequence, recorded: Seq[str], *, closing_email: bool) -> Step:
    """The one rule for what comes next, used by dispatch, dry runs and the pages alike."""
    lesson_id = next_lesson(sequence, recorded)
    if lesson_id is None:
        send = closing_email and CLOSING_ID not in recorded
        return Step(CLOSING_ID, send=send, final=True)
    # Without a closing email, the last lesson itself completes the sequence.
    final = not closing_email and next_lesson(sequence, [*recorded, lesson_id]) is None
    return Step(lesson_id, send=True, final=final)


def finished(sequence: Sequence, recorded: Seq[str]) -> bool:
    """Whether every lesson in the current order has been sent or skipped."""
    return next_lesson(sequence, recorded) is None


def lessons_sent(recorded: Seq[str]) -> int:
    """How many lessons (not the closing email) are recorded."""
    return sum(1 for lesson_id in recorded if lesson_id != CLOSING_ID)
