"""Tests for the shipped 30-day sequence: shape, phases, length, discretion, facts, originality."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guide.lessons import Lesson, Sequence, load_library
from tests.tools.fingerprint_seed import RUN, fingerprint, normalise, read_fingerprints, runs

REPO = Path(__file__).resolve().parent.parent
LESSONS = REPO / "lessons"
# Hashed 8-word runs of the source article, not the article: its sentences stay out of the repo.
SEED_FINGERPRINTS = REPO / "tests" / "data" / "seed-fingerprints.txt"

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


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    """The shipped no-contact sequence."""
    return load_library(LESSONS)["no-contact"]


@pytest.fixture(scope="module")
def seed_fingerprints() -> frozenset[str]:
    """The source article's fingerprints; their absence is a failure, never a skip."""
    if not SEED_FINGERPRINTS.is_file():
        pytest.fail(
            f"{SEED_FINGERPRINTS} is missing: rebuild it with "
            "`python -m tests.tools.fingerprint_seed <article.txt>`",
            pytrace=False,
        )
    return frozenset(read_fingerprints(SEED_FINGERPRINTS))


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


def copied_runs(sequence: Sequence, seed: frozenset[str]) -> list[str]:
    """Every run of lesson text whose fingerprint is the seed's, as `file (field): words`."""
    return [
        f"{lesson.path.relative_to(REPO)} ({field}): {' '.join(run)}"
        for lesson in sequence.lessons
        for field, text in fields(lesson).items()
        for run in sorted(runs(normalise(text)))
        if fingerprint(run) in seed
    ]


def test_no_eight_word_run_from_the_seed(
    sequence: Sequence, seed_fingerprints: frozenset[str]
) -> None:
    assert len(seed_fingerprints) > 1000, "the seed fingerprints look truncated"
    copied = copied_runs(sequence, seed_fingerprints)
    assert copied == [], "lesson text copies the seed article:\n" + "\n".join(copied)


def test_the_run_check_can_fail(sequence: Sequence, seed_fingerprints: frozenset[str]) -> None:
    # The article cannot be recovered from its hashes, so plant a canary instead: a run of a
    # lesson's body added to the seed's fingerprints must be reported, with file and words.
    lesson = sequence.lessons[0]
    canary = normalise(lesson.body)[10 : 10 + RUN]
    planted = seed_fingerprints | {fingerprint(canary)}
    report = copied_runs(sequence, planted)
    assert f"{lesson.path.relative_to(REPO)} (body): {' '.join(canary)}" in report
    # The same words re-punctuated, upper-cased and with a curly apostrophe still match.
    first, *rest = canary
    lifted = "\u201c" + " \u2014 ".join([f"{first[0]}\u2019{first[1:]}", *rest]).upper() + "!\u201d"
    assert {fingerprint(run) for run in runs(normalise(lifted))} & planted
