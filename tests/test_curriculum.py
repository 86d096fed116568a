"""Tests for the shipped 30-day sequence: shape, phases, length, discretion, facts, originality."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guide.lessons import Lesson, Sequence, load_library

REPO = Path(__file__).resolve().parent.parent
LESSONS = REPO / "lessons"
# The clone of the repository has the shared folder beside it (/work/main and /work/shared).
SEED = REPO.parent / "shared" / "seed" / "no-contact-article.txt"

PHASE_DAYS = [
    ("going-no-contact", 1, 4),
    ("narcissistic-rage", 5, 10),
    ("flying-monkeys", 11, 15),
    ("enablers", 16, 19),
    ("rumination", 20, 25),
    ("closure", 26, 30),
]
REQUIRED = ("id", "title", "subject", "discreet_subject", "phase", "body", "reflection")
REVEALING = (
    "abuse",
    "narciss",
    "recover",
    "contact",
    "heal",
    "rage",
    "monkey",
    "enabler",
    "trauma",
    "therap",
)
RUN = 8


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    """The shipped no-contact sequence."""
    return load_library(LESSONS)["no-contact"]


@pytest.fixture(scope="module")
def seed_text() -> str:
    """The source article; its absence is a failure, never a skip."""
    if not SEED.is_file():
        pytest.fail(
            f"seed article not found at {SEED}: the originality check needs shared/seed/ "
            "beside the repository",
            pytrace=False,
        )
    return SEED.read_text(encoding="utf-8")


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation and apostrophes removed."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("'", "")
    return re.sub(r"[^\w\s]", " ", text).split()


def runs(words: list[str], size: int = RUN) -> set[tuple[str, ...]]:
    """Every run of `size` consecutive words."""
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def fields(lesson: Lesson) -> dict[str, str]:
    """The reader-visible text of a lesson, field by field."""
    return {
        "title": lesson.title,
        "subject": lesson.subject,
        "discreet_subject": lesson.discreet_subject,
        "body": lesson.body,
        "reflection": lesson.reflection,
    }


def test_exactly_thirty_lessons(sequence: Sequence) -> None:
    assert len(sequence) == 30
    assert len({lesson.id for lesson in sequence.lessons}) == 30
    assert sequence.cadence_days == 1


def test_phases_in_order_with_their_days(sequence: Sequence) -> None:
    assert [phase.id for phase in sequence.phases] == [phase for phase, _, _ in PHASE_DAYS]
    for phase, first, last in PHASE_DAYS:
        days = [
            day for day, lesson in enumerate(sequence.lessons, start=1) if lesson.phase == phase
        ]
        assert days == list(range(first, last + 1)), phase


def test_every_field_present_and_non_empty(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        for name in REQUIRED:
            value = getattr(lesson, name)
            assert isinstance(value, str) and value.strip(), f"{lesson.id}: {name} is empty"


def test_bodies_between_300_and_600_words(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        assert 300 <= lesson.words <= 600, f"{lesson.id}: {lesson.words} words"


def test_discreet_subjects_reveal_nothing(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        subject = lesson.discreet_subject.lower()
        for word in REVEALING:
            assert word not in subject, f"{lesson.id}: {lesson.discreet_subject!r} has {word!r}"


def test_hotline_figure_is_attributed(sequence: Sequence) -> None:
    attributed = [
        lesson.id
        for lesson in sequence.lessons
        for paragraph in lesson.body.split("\n\n")
        if "National Domestic Violence Hotline" in paragraph
        and re.search(r"\bseven\b", paragraph, re.IGNORECASE)
    ]
    assert attributed, "no paragraph credits the 'seven attempts' figure to the Hotline"


@pytest.mark.parametrize("name", ["Lowen", "Kohut"])
def test_sources_are_named(sequence: Sequence, name: str) -> None:
    assert any(re.search(rf"\b{name}\b", lesson.body) for lesson in sequence.lessons), name


def test_normalise_treats_apostrophes_and_punctuation_alike() -> None:
    assert normalise("It’s the Hotline's “seven”—times!") == [
        "its",
        "the",
        "hotlines",
        "seven",
        "times",
    ]


def test_no_eight_word_run_from_the_seed(sequence: Sequence, seed_text: str) -> None:
    seed_runs = runs(normalise(seed_text))
    assert len(seed_runs) > 1000, "the seed article looks truncated"
    copied = [
        f"{lesson.id} ({field}): {' '.join(run)}"
        for lesson in sequence.lessons
        for field, text in fields(lesson).items()
        for run in sorted(runs(normalise(text)) & seed_runs)
    ]
    assert copied == [], "lesson text copies the seed article:\n" + "\n".join(copied)


def test_the_run_check_can_fail(seed_text: str) -> None:
    # A sentence lifted from the seed (with its punctuation changed) must be caught.
    first_sentence = next(line for line in seed_text.splitlines() if len(line.split()) > 12)
    lifted = first_sentence.replace("'", "\u2019").upper()
    assert runs(normalise(lifted)) & runs(normalise(seed_text))
