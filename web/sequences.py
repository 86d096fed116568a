"""The sequences a reader can choose on the sign-up and manage pages, in plain words."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from types import MappingProxyType

from guide.lessons import Sequence
from guide.progress import finished

# One short line per shipped sequence. The pages may be seen by someone else, so these say
# who a sequence is for without naming the topic; other sequences show their description's
# first sentence.
SHORT_LINES: Mapping[str, str] = MappingProxyType(
    {
        "no-contact": "For stepping back from someone fully, one day at a time.",
        "low-contact": "For when you still need some contact, for example through children, "
        "a home or work.",
    }
)


@dataclass(frozen=True)
class Choice:
    """One sequence as a radio button, with what this reader has received of it."""

    id: str
    title: str
    line: str
    days: int
    received: int
    finished: bool


def choices(
    sequences: Mapping[str, Sequence], default: str, recorded: Seq[str] = ()
) -> list[Choice]:
    """Every loaded sequence, the default first; `recorded` counts what each has received."""
    done = set(recorded)
    ordered = sorted(sequences.values(), key=lambda s: (s.id != default, s.id))
    return [
        Choice(
            id=sequence.id,
            title=sequence.title,
            line=SHORT_LINES.get(sequence.id) or first_sentence(sequence.description),
            days=len(sequence),
            received=sum(1 for lesson_id in sequence.order if lesson_id in done),
            finished=finished(sequence, recorded),
        )
        for sequence in ordered
    ]


def first_sentence(text: str) -> str:
    """The text up to and including its first full stop (all of it when there is none)."""
    head, dot, _ = text.partition(". ")
    return head + dot.strip()
