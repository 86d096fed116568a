"""Tests for catch_up: lessons a reader is past but never had come next, once each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from guide.lessons import Sequence, check_sequence
from guide.progress import CLOSING_ID, choose_next, finished, next_lesson, next_step
from guide.records import NewSubscriber
from guide.store import Store
from scheduler import subscribers as life

ORDER = ("a", "b", "c", "d", "e", "f")
NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("recorded", "catch_up", "expected"),
    [
        # Nobody has passed a lesson that is not yet due: the order is unchanged.
        ([], ("b",), "a"),
        (["a"], ("b",), "b"),
        (["a", "b"], ("b",), "c"),
        # Past c without b (b was inserted after they had a, c): b comes next, then d.
        (["a", "c"], ("b",), "b"),
        (["a", "c", "b"], ("b",), "d"),
        # Two missed lessons come in catch_up's order, not the sequence's, then the place resumes.
        (["a", "e"], ("d", "b"), "d"),
        (["a", "e", "d"], ("d", "b"), "b"),
        (["a", "e", "d", "b"], ("d", "b"), "f"),
        # Missed lessons that are not listed stay missed, as without catch_up.
        (["a", "e", "d", "b"], ("d", "b", "f"), "f"),
        (["a", "e"], (), "f"),
        # A listed lesson they skipped counts as had.
        (["a", "c", "d"], ("b",), "b"),
        (["a", "b", "c", "d"], ("b",), "e"),
        # The end of the order with a missed listed lesson: that lesson, then nothing.
        (["a", "f"], ("c",), "c"),
        (["a", "f", "c"], ("c",), None),
        # Lessons of another sequence (after a switch) and removed lessons are not a place.
        (["other-1", "other-2"], ("b",), "a"),
        (["a", "gone", "c"], ("b",), "b"),
        # A listed id that is not in the order (checked by lessons check) is ignored here.
        (["a", "c"], ("zz",), "d"),
    ],
)
def test_choose_next_with_catch_up(
    recorded: list[str], catch_up: tuple[str, ...], expected: str | None
) -> None:
    assert choose_next(ORDER, recorded, catch_up=catch_up) == expected


def test_a_catch_up_lesson_sent_in_order_is_the_readers_place() -> None:
    # A new reader gets b on its own day; they then go on from b, not from where a was.
    assert choose_next(ORDER, ["a", "b"], catch_up=("b",)) == "c"
    # After a reorder that moves b later, a reader who had it in order goes on from b.
    assert choose_next(("a", "c", "b", "d"), ["a", "c", "b"], catch_up=("b",)) == "d"


def walk(order: tuple[str, ...], had: list[str], catch_up: tuple[str, ...]) -> list[str]:
    """Every lesson choose_next hands out after `had`, until it says there is none."""
    history = list(had)
    while (lesson := choose_next(order, history, catch_up=catch_up)) is not None:
        history.append(lesson)
        assert len(history) <= len(order) + len(had), "choose_next did not finish"
    return history[len(had) :]


@pytest.mark.parametrize("had_days", range(len(ORDER) + 1))
def test_every_reader_of_an_older_order_gets_each_listed_lesson_once(had_days: int) -> None:
    # The old order lacked b and e; both were inserted and listed in catch_up.
    old = [lesson for lesson in ORDER if lesson not in ("b", "e")]
    had = old[:had_days]
    rest = walk(ORDER, had, ("e", "b"))
    assert len(set(had + rest)) == len(had) + len(rest), "a lesson was sent twice"
    assert {"b", "e"} <= set(had + rest), "a listed lesson never came"
    # Nothing after their place is skipped, and what follows it comes in order.
    place = max((ORDER.index(lesson) for lesson in had), default=-1)
    after = [lesson for lesson in ORDER[place + 1 :] if lesson not in had]
    assert [lesson for lesson in rest if ORDER.index(lesson) > place] == after


SEQUENCE = """\
id: demo
title: Demo
cadence: daily
phases:
  - id: only
    title: Only
lessons:
  - alpha
  - beta
  - gamma
catch_up:
  - beta
"""


def write(folder: Path, sequence: str) -> None:
    """A three-lesson sequence in `folder` with the given sequence.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequence.yaml").write_text(sequence, encoding="utf-8")
    for lesson in ("alpha", "beta", "gamma"):
        (folder / f"{lesson}.yaml").write_text(
            f"id: {lesson}\ntitle: {lesson}\nsubject: {lesson}\nphase: only\n"
            f"body: The {lesson} lesson.\nreflection: A question.\n",
            encoding="utf-8",
        )


def load(folder: Path) -> Sequence:
    """The sequence in `folder`, which must have no problems."""
    sequence, problems = check_sequence(folder)
    assert sequence is not None and not problems, problems
    return sequence


def test_next_step_and_finished_follow_catch_up(tmp_path: Path) -> None:
    sequence = load(tmp_path / "demo")
    assert sequence.catch_up == ("beta",)
    step = next_step(sequence, ["alpha", "gamma"], closing_email=False)
    assert (step.lesson_id, step.send, step.final) == ("beta", True, True)
    assert not finished(sequence, ["alpha", "gamma"])
    assert finished(sequence, ["alpha", "gamma", "beta"])
    with_closing = next_step(sequence, ["alpha", "gamma", "beta"], closing_email=True)
    assert (with_closing.lesson_id, with_closing.send) == (CLOSING_ID, True)


@pytest.fixture(autouse=True)
def _demo(tmp_path: Path) -> None:
    write(tmp_path / "demo", SEQUENCE)


@pytest.mark.parametrize(
    ("catch_up", "line", "field", "message"),
    [
        ("catch_up:\n  - beta\n  - delta\n", 13, "catch_up[1]", "'delta' is not in lessons"),
        ("catch_up:\n  - beta\n  - beta\n", 13, "catch_up[1]", "'beta' is listed twice"),
        ("catch_up:\n  - Beta\n", 12, "catch_up[0]", "must be a lesson id"),
        ("catch_up: beta\n", 11, "catch_up", "must be a list of lesson ids"),
    ],
)
def test_lessons_check_names_a_bad_catch_up_by_file_and_line(
    tmp_path: Path, catch_up: str, line: int, field: str, message: str
) -> None:
    folder = tmp_path / "demo"
    write(folder, SEQUENCE.replace("catch_up:\n  - beta\n", catch_up))
    sequence, problems = check_sequence(folder)
    assert sequence is None
    assert [(p.line, p.field) for p in problems] == [(line, field)]
    assert message in problems[0].message
    assert str(problems[0]).startswith(f"{folder / 'sequence.yaml'}:{line}: {field}: ")


def test_without_catch_up_nothing_changes(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    write(folder, SEQUENCE.replace("catch_up:\n  - beta\n", ""))
    sequence = load(folder)
    assert sequence.catch_up == ()
    assert next_step(sequence, ["alpha", "gamma"], closing_email=False).lesson_id == CLOSING_ID


async def test_skip_takes_the_lesson_dispatch_would_send(tmp_path: Path) -> None:
    # The lifecycle's skip and the dispatch pass follow one rule: a pending catch-up lesson
    # is the next lesson, so it is the one skipped.
    sequence = load(tmp_path / "demo")
    store = await Store.open("", sqlite_path=tmp_path / "state" / "guide.sqlite3")
    try:
        sub, _ = await store.add(
            NewSubscriber("c@example.org", "demo", "UTC", "09:00"),
            status="active",
            now=NOW,
            next_due_at=NOW,
            actor="test",
        )
        for had in ("alpha", "gamma"):
            await store.skip(sub, had, NOW)
        skipped = await life.skip(store, sub, {"demo": sequence}, now=NOW, actor="test")
        assert skipped == next_lesson(sequence, ["alpha", "gamma"]) == "beta"
    finally:
        await store.close()
