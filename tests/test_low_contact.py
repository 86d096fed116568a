"""Tests for the shipped low-contact sequence: shape, phases, length, grade, safety, originality."""

from __future__ import annotations

import re

import pytest
import yaml

from guide.lessons import Sequence, load_library
from tests.test_curriculum import LESSONS, REVEALING, SEED_FINGERPRINTS, copied_runs
from tests.tools.fingerprint_seed import read_fingerprints

PHASES = [
    "starting-with-safety",
    "calm-short-replies",
    "keeping-things-in-writing",
    "shared-homes-work-and-children",
    "looking-after-yourself",
]
REQUIRED = ("id", "title", "subject", "discreet_subject", "phase", "body", "reflection")
MAX_GRADE = 6.0
# A phase title is printed in every email that is not discreet, so it must name no one's harm.
PHASE_TITLE_AVOID = ("abuse", "narciss", "rage", "monkey", "enabler", "trauma", "violence")
# What an advocate would call "talk to someone now" (the Danger Assessment's strongest signs).
WARNING_SIGNS = {
    "threats to kill": r"threat\w* to kill",
    "choking or strangling": r"chok\w*.{0,40}strangl\w*|strangl\w*.{0,40}chok\w*",
    "weapons": r"weapon",
    "stalking": r"stalk",
    "threats about children or pets": r"threat\w*.{0,60}children.{0,40}pets",
}
HARD_PROSE = (
    "Notwithstanding considerable institutional heterogeneity, contemporary psychotherapeutic "
    "interventions demonstrate substantial effectiveness in ameliorating posttraumatic "
    "symptomatology, particularly when practitioners prioritise collaboration."
)
EASY_PROSE = "You can rest now. The day was long. Drink some water and sit down. You did well."


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    """The shipped low-contact sequence, loaded on its own."""
    return load_library(LESSONS / "low-contact")["low-contact"]


@pytest.fixture(scope="module")
def no_contact_ids() -> set[str]:
    """Every lesson id the no-contact sequence lists or has a file for, valid or not."""
    folder = LESSONS / "no-contact"
    listed = yaml.safe_load((folder / "sequence.yaml").read_text(encoding="utf-8"))["lessons"]
    return set(listed) | {path.stem for path in folder.glob("*.yaml")} - {"sequence"}


def syllables(word: str) -> int:
    """Estimated syllables in one English word: vowel groups less a silent final e."""
    word = re.sub(r"[^a-z]", "", word.lower())
    if not word:
        return 0
    if len(word) <= 3:
        return 1
    # A final "e" is mostly silent ("home", "safe"); "-le" after a consonant is not ("little").
    if word.endswith("e") and not re.search(r"[^aeiouy]le$", word):
        word = word[:-1]
    # "-ed" is silent after most consonants ("asked"), heard after t and d ("wanted", "needed").
    elif word.endswith("ed") and not re.search(r"[td]ed$", word):
        word = word[:-2]
    groups = re.findall(r"[aeiouy]+", word)
    return max(1, len(groups))


def plain_sentences(markdown: str) -> list[list[str]]:
    """The words of each sentence of a Markdown body; a heading or list item ends one."""
    sentences: list[list[str]] = []
    for line in markdown.splitlines():
        line = re.sub(r"^\s*(?:#+|[-*]|\d+\.|>)\s*", "", line)
        line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line).replace("*", "")
        for sentence in re.split(r"[.!?]+(?=\s|$)", line):
            words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'\u2019-]*", sentence)
            if words:
                sentences.append(words)
    return sentences


def grade(markdown: str) -> float:
    """The Flesch-Kincaid grade level of a Markdown body."""
    sentences = plain_sentences(markdown)
    words = [word for sentence in sentences for word in sentence]
    if not words:
        raise ValueError("no words to grade")
    per_sentence = len(words) / len(sentences)
    per_word = sum(syllables(word) for word in words) / len(words)
    return 0.39 * per_sentence + 11.8 * per_word - 15.59


def test_about_two_weeks_of_daily_lessons(sequence: Sequence) -> None:
    assert 12 <= len(sequence) <= 16
    assert len({lesson.id for lesson in sequence.lessons}) == len(sequence)
    assert sequence.cadence_days == 1


def test_lesson_ids_differ_from_the_no_contact_ones(
    sequence: Sequence, no_contact_ids: set[str]
) -> None:
    # Progress is kept by lesson id, so a shared id would count as read in the other sequence.
    assert len(no_contact_ids) >= 30
    assert set(sequence.order) & no_contact_ids == set()


def test_phases_in_order_each_with_a_run_of_days(sequence: Sequence) -> None:
    assert [phase.id for phase in sequence.phases] == PHASES
    seen = [lesson.phase for lesson in sequence.lessons]
    assert sorted(seen, key=PHASES.index) == seen
    assert set(seen) == set(PHASES)


def test_phase_titles_can_sit_in_an_inbox(sequence: Sequence) -> None:
    for phase in sequence.phases:
        found = [word for word in PHASE_TITLE_AVOID if word in phase.title.lower()]
        assert not found, f"{phase.id}: {phase.title!r} has {found}"


def test_every_field_present_and_non_empty(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        for name in REQUIRED:
            value = getattr(lesson, name)
            assert isinstance(value, str) and value.strip(), f"{lesson.id}: {name} is empty"


def test_bodies_between_300_and_450_words(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        assert 300 <= lesson.words <= 450, f"{lesson.id}: {lesson.words} words"


def test_grade_tells_hard_prose_from_easy() -> None:
    assert grade(HARD_PROSE) > 14
    assert grade(EASY_PROSE) < 2
    assert [syllables(word) for word in ("home", "little", "asked", "wanted", "children")] == [
        1,
        2,
        1,
        2,
        2,
    ]


def test_bodies_read_at_grade_six_or_below(sequence: Sequence) -> None:
    grades = {lesson.id: round(grade(lesson.body), 1) for lesson in sequence.lessons}
    assert {lid: g for lid, g in grades.items() if g > MAX_GRADE} == {}


def test_discreet_subjects_reveal_nothing(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        subject = lesson.discreet_subject.lower()
        for word in (*REVEALING, "safe", "court", "child", "parent"):
            assert word not in subject, f"{lesson.id}: {lesson.discreet_subject!r} has {word!r}"


def test_warning_signs_come_early_with_an_advocate(sequence: Sequence) -> None:
    early = [lesson for lesson in sequence.lessons if lesson.phase == PHASES[0]]
    for lesson in early:
        body = " ".join(lesson.body.split())
        if all(re.search(sign, body, re.IGNORECASE) for sign in WARNING_SIGNS.values()):
            assert "advocate" in body
            return
    missing = {
        name
        for name, sign in WARNING_SIGNS.items()
        if not any(re.search(sign, " ".join(x.body.split()), re.IGNORECASE) for x in early)
    }
    pytest.fail(f"no lesson of {PHASES[0]} names every warning sign; missing: {missing}")


def test_the_risk_of_change_and_of_new_replies_is_said(sequence: Sequence) -> None:
    bodies = {lesson.id: " ".join(lesson.body.split()) for lesson in sequence.lessons}
    assert any(re.search(r"leav\w*.{0,200}risk", b, re.IGNORECASE) for b in bodies.values())
    grey_rock = [lid for lid, b in bodies.items() if "grey rock" in b.lower()]
    assert grey_rock, "no lesson explains grey rock"
    assert any(re.search(r"escalat|get worse", bodies[lid]) for lid in grey_rock), grey_rock


def test_records_warn_about_shared_accounts_and_devices(sequence: Sequence) -> None:
    # "Somewhere only you can reach" is not safe advice without a word on synced accounts.
    keeping = [
        lesson
        for lesson in sequence.lessons
        if "record" in lesson.body.lower() and "only you can reach" in lesson.body.lower()
    ]
    assert keeping, "no lesson says where to keep a record"
    for lesson in keeping:
        body = lesson.body.lower()
        assert "shared cloud" in body and "shared devices" in body, lesson.id


def test_the_guide_diagnoses_no_one_and_names_its_sources(sequence: Sequence) -> None:
    text = " ".join(" ".join(lesson.body.split()) for lesson in sequence.lessons)
    assert "diagnoses no one" in text
    for source in ("National Domestic Violence Hotline", "High Conflict Institute", "988"):
        assert source in text, source


@pytest.fixture(scope="module")
def seed_fingerprints() -> frozenset[str]:
    """The source article's fingerprints; their absence is a failure, never a skip."""
    if not SEED_FINGERPRINTS.is_file():
        pytest.fail(f"{SEED_FINGERPRINTS} is missing", pytrace=False)
    return frozenset(read_fingerprints(SEED_FINGERPRINTS))


def test_no_eight_word_run_from_the_seed(
    sequence: Sequence, seed_fingerprints: frozenset[str]
) -> None:
    assert len(seed_fingerprints) > 1000, "the seed fingerprints look truncated"
    copied = copied_runs(sequence, seed_fingerprints)
    assert copied == [], "lesson text copies the seed article:\n" + "\n".join(copied)
