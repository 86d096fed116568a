"""Tests for the shipped low-contact sequence: the curriculum's shared checks, and its own.

The shared checks are imported from tests/test_curriculum.py, so they run here against this
module's `shape` and `sequence` fixtures: the two sequences are held to the same rules.
"""

from __future__ import annotations

import re

import pytest
import yaml

from guide.lessons import Sequence
from tests.test_curriculum import (
    BLOCKING,
    BLOCKING_RISK,
    LESSONS,
    RECORDS,
    SHARED_ACCOUNTS,
    Shape,
    load_sequence,
    plain_text,
    unqualified,
)
from tests.test_curriculum import seed_fingerprints as seed_fingerprints
from tests.test_curriculum import (
    test_bodies_between_300_and_450_words as test_bodies_between_300_and_450_words,
)
from tests.test_curriculum import (
    test_bodies_read_at_grade_six_or_below as test_bodies_read_at_grade_six_or_below,
)
from tests.test_curriculum import (
    test_discreet_subjects_reveal_nothing as test_discreet_subjects_reveal_nothing,
)
from tests.test_curriculum import (
    test_every_field_present_and_non_empty as test_every_field_present_and_non_empty,
)
from tests.test_curriculum import (
    test_headings_invite_rather_than_order as test_headings_invite_rather_than_order,
)
from tests.test_curriculum import (
    test_lesson_count_and_cadence as test_lesson_count_and_cadence,
)
from tests.test_curriculum import (
    test_lessons_say_what_they_must as test_lessons_say_what_they_must,
)
from tests.test_curriculum import (
    test_no_eight_word_run_from_the_seed as test_no_eight_word_run_from_the_seed,
)
from tests.test_curriculum import (
    test_phase_titles_can_sit_in_an_inbox as test_phase_titles_can_sit_in_an_inbox,
)
from tests.test_curriculum import (
    test_phases_in_order_with_their_days as test_phases_in_order_with_their_days,
)

RISK = "when-risk-can-rise"
LOW_CONTACT = Shape(
    "low-contact",
    14,
    (
        ("starting-with-safety", 1, 3),
        ("calm-short-replies", 4, 5),
        ("keeping-things-in-writing", 6, 8),
        ("shared-homes-work-and-children", 9, 12),
        ("looking-after-yourself", 13, 14),
    ),
    must_say=(
        # Safety first: change can raise the risk, and the signs that mean "talk to someone now".
        (RISK, r"leav\w*.{0,120}risk"),
        (RISK, r"changing how you respond may make things worse"),
        (RISK, r"threat\w* to kill"),
        (RISK, r"chok\w*.{0,40}strangl\w*|strangl\w*.{0,40}chok\w*"),
        (RISK, r"weapon"),
        (RISK, r"stalk"),
        (RISK, r"threat\w*.{0,60}children.{0,40}pets"),
        (RISK, r"advocate"),
        (RISK, r"National Domestic Violence Hotline"),
        ("when-stepping-away-is-not-possible", r"diagnoses no one"),
        # Grey rock is offered with its risk, never as a sure thing.
        ("the-grey-rock-idea", r"not a therapy or a proven method"),
        ("the-grey-rock-idea", r"escalate"),
        ("brief-and-businesslike-replies", r"Bill Eddy of the High Conflict Institute"),
        ("a-record-of-what-happens", r"shared cloud accounts"),
        ("a-record-of-what-happens", r"shared devices"),
        ("who-can-see-your-phone-and-accounts", r"removing their access may alert them"),
        ("handovers-in-public-places", r"public place"),
        ("when-a-court-order-could-help", r"not legal advice"),
        ("your-life-beyond-the-contact", r"thoughts of ending your life"),
        ("your-life-beyond-the-contact", r"\b988\b"),
    ),
)


@pytest.fixture(scope="module")
def shape() -> Shape:
    """The low-contact sequence's expected shape, for the imported shared checks."""
    return LOW_CONTACT


@pytest.fixture(scope="module")
def sequence() -> Sequence:
    """The shipped low-contact sequence, checked on its own."""
    return load_sequence(LOW_CONTACT.sequence_id)


@pytest.fixture(scope="module")
def no_contact_ids() -> set[str]:
    """Every lesson id the no-contact sequence lists or has a file for, valid or not."""
    folder = LESSONS / "no-contact"
    listed = yaml.safe_load((folder / "sequence.yaml").read_text(encoding="utf-8"))["lessons"]
    return (set(listed) | {path.stem for path in folder.glob("*.yaml")}) - {"sequence"}


def test_about_two_weeks(sequence: Sequence) -> None:
    assert 12 <= len(sequence) <= 16


def test_lesson_ids_differ_from_the_no_contact_ones(
    sequence: Sequence, no_contact_ids: set[str]
) -> None:
    # Progress is kept by lesson id: a shared id would count as read in the other sequence.
    assert len(no_contact_ids) >= 30
    assert set(sequence.order) & no_contact_ids == set()


def test_blocking_always_comes_with_its_risk(sequence: Sequence) -> None:
    assert any(BLOCKING.search(lesson.body) for lesson in sequence.lessons)
    assert unqualified(sequence, BLOCKING, BLOCKING_RISK) == []


def test_keeping_records_mentions_shared_accounts(sequence: Sequence) -> None:
    assert any(RECORDS.search(lesson.body) for lesson in sequence.lessons)
    assert unqualified(sequence, RECORDS, SHARED_ACCOUNTS) == []


def test_warning_signs_come_early_as_one_list_beside_an_advocate(sequence: Sequence) -> None:
    # Read before any lesson that changes how the reader responds, in one place, not scattered.
    assert sequence.day_of(RISK) == 2
    lesson = sequence.lesson_on_day(2)
    section = next(part for part in re.split(r"(?m)^## ", lesson.body) if "advocate now" in part)
    items = [line for line in section.splitlines() if line.startswith("- ")]
    # The five from issue 11, and escalation, forced sex and their own fear (review 11).
    assert len(items) == 8
    assert "trained domestic violence advocate" in plain_text(section)
