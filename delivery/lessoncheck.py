"""Every lesson rendered as the email a subscriber gets: what fails, or would not fit."""

from __future__ import annotations

from datetime import datetime

from delivery.compose import Composer
from delivery.message import Recipient
from guide.errors import Problem
from guide.lessonfile import display
from guide.lessons import Sequence
from guide.render import HTML_PART_MAX, MESSAGE_MAX
from guide.text import NAME_MAX

# The longest name a subscriber may have: the greeting is the one part that grows with it.
SAMPLE = "reader@example.org", "N" * NAME_MAX


def render_problems(
    composer: Composer, sequences: dict[str, Sequence], now: datetime
) -> list[Problem]:
    """Each lesson composed, plain and discreet: one problem per lesson that fails or is too big.

    What guide.lessons checks in the files cannot see the email around a body; this can, so
    `lessons check` (and a service that passes it to its LessonLibrary) refuses what the
    dispatch pass could not send.
    """
    problems: list[Problem] = []
    for sequence in sequences.values():
        for lesson in sequence.lessons:
            where = (display(lesson.path), lesson.body_line, "body")
            for discreet in (False, True):
                recipient = Recipient(*SAMPLE, discreet)
                try:
                    composed, readable = composer.sample(recipient, sequence, lesson, now)
                except Exception as err:  # whatever fails here would fail every send of it
                    problems.append(Problem(*where, f"cannot be rendered: {err!r}"))
                    break
                html = len(readable.html.encode())
                if html > HTML_PART_MAX:
                    message = (
                        f"the email's HTML is {html:,} bytes; the limit is {HTML_PART_MAX:,} "
                        "(Gmail clips HTML over 102 KB, hiding the stop link): shorten the body"
                    )
                    problems.append(Problem(*where, message))
                    break
                if len(composed.data) > MESSAGE_MAX:
                    size = f"{len(composed.data):,} bytes; the limit is {MESSAGE_MAX:,}"
                    problems.append(Problem(*where, f"the email is {size}: shorten the body"))
                    break
    return problems
