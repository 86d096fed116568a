"""Subscribers mid-way through the first edition of no-contact continue on the second edition.

Progress is kept by lesson id (guide/progress.py). The first edition's files are gone from the
repository, so its order and phases are written down here, and a stand-in first edition with
those ids is built in a temporary folder; the second edition is the shipped one.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from delivery.transports import MemoryTransport
from guide.lessons import Sequence, check_sequence
from guide.progress import CLOSING_ID, next_step
from guide.schema import deliveries
from tests.harness import LESSONS, Clock, add_many, config_for, day_of, make_parts, next_due
from wiring import Parts

# The first edition (until issue 11), day 1 first, with the phase of each stretch of days.
FIRST_EDITION = (
    ("going-no-contact", ("why-no-contact-is-hard", "seven-attempts", "the-month-ahead")),
    ("going-no-contact", ("safety-comes-first",)),
    (
        "narcissistic-rage",
        (
            "the-mask-and-where-it-comes-from",
            "why-distance-threatens-the-mask",
            "rage-as-projection",
            "rage-as-fear-and-self-soothing",
            "the-drive-for-revenge",
            "staying-safe-when-rage-comes",
        ),
    ),
    (
        "flying-monkeys",
        (
            "who-flying-monkeys-are",
            "smear-campaigns",
            "pressure-to-reconcile",
            "no-contact-includes-them",
            "responding-without-stepping-back",
        ),
    ),
    (
        "enablers",
        (
            "kind-words-that-still-hurt",
            "when-doubt-wakes-up",
            "choosing-who-to-confide-in",
            "finding-informed-support",
        ),
    ),
    (
        "rumination",
        (
            "what-rumination-is",
            "the-self-blame-loop",
            "the-self-doubt-loop",
            "waiting-for-closure-from-them",
            "justice-revenge-and-the-hook",
            "interrupting-the-loop",
        ),
    ),
    (
        "closure",
        (
            "closure-built-inside",
            "your-reality-is-valid",
            "rebuilding-self-trust",
            "when-setbacks-come",
            "looking-ahead",
        ),
    ),
)
FIRST_ORDER = tuple(lesson for _, ids in FIRST_EDITION for lesson in ids)
# The second edition's new safety lessons (its sequence.yaml catch_up), which a reader already
# past them gets next, once each, in this order.
CATCH_UP = (
    "when-leaving-raises-the-risk",
    "your-phone-and-accounts",
    "money-home-and-the-law",
    "when-they-come-back-charming",
)
PHASES = ("going-no-contact", "narcissistic-rage", "flying-monkeys", "enablers", "rumination")
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def second_edition() -> Sequence:
    """The shipped no-contact sequence, checked on its own."""
    sequence, problems = check_sequence(LESSONS / "no-contact", LESSONS)
    assert sequence is not None and not problems, problems
    return sequence


def write_first_edition(folder: Path) -> None:
    """A stand-in first edition: the real ids, order and phases, with placeholder text."""
    folder.mkdir(parents=True)
    phases = "".join(f"  - id: {p}\n    title: {p}\n" for p in (*PHASES, "closure"))
    order = "".join(f"  - {lesson}\n" for lesson in FIRST_ORDER)
    (folder / "sequence.yaml").write_text(
        f"id: no-contact\ntitle: First edition\ndescription: The first edition.\n"
        f"cadence: daily\nphases:\n{phases}lessons:\n{order}",
        encoding="utf-8",
    )
    for phase, ids in FIRST_EDITION:
        for lesson in ids:
            (folder / f"{lesson}.yaml").write_text(
                f"id: {lesson}\ntitle: Old {lesson}\nsubject: Old {lesson}\nphase: {phase}\n"
                f"body: The first edition of {lesson}.\nreflection: A question.\n",
                encoding="utf-8",
            )


def sent_in_order(transport: MemoryTransport) -> list[int | None]:
    """The 'Day N' of each email delivered so far (None for the closing email)."""
    return [day_of(envelope.data) for envelope in transport.outbox]


async def recorded(parts: Parts) -> list[str]:
    """Every lesson id recorded for the one subscriber, oldest first."""
    async with parts.store.engine.connect() as conn:
        rows = await conn.execute(select(deliveries.c.lesson_id).order_by(deliveries.c.id))
        return [str(lesson) for (lesson,) in rows]


async def tick_until(parts: Parts, clock: Clock, transport: MemoryTransport, sent: int) -> None:
    """Run dispatch passes at each due time until `sent` emails went out (or nothing is due)."""
    for _ in range(200):
        due = await next_due(parts)
        if due is None or len(transport.outbox) >= sent:
            return
        clock.now = max(due, clock.now)
        await parts.dispatcher.tick()
    pytest.fail("dispatch did not settle in 200 passes")


def continuation(sequence: Sequence, had: list[str]) -> list[str]:
    """What the progress rule sends after `had`, to the end (the closing email included)."""
    history = list(had)
    for _ in range(len(sequence) + 2):
        step = next_step(sequence, history, closing_email=True)
        if not step.send:
            return history[len(had) :]
        history.append(step.lesson_id)
        if step.final:
            return history[len(had) :]
    pytest.fail(f"the progress rule did not finish after {had[-1:]}")


async def test_after_day_12_of_the_first_edition_the_second_continues(tmp_path: Path) -> None:
    root = tmp_path / "lessons"
    folder = root / "no-contact"
    write_first_edition(folder)
    clock = Clock(START)
    transport = MemoryTransport()
    parts = await make_parts(config_for(tmp_path, lessons=root), clock, transport)
    try:
        await add_many(parts, [("reader@example.org", "Europe/London", "08:00")], START)
        await tick_until(parts, clock, transport, sent=12)
        assert await recorded(parts) == list(FIRST_ORDER[:12])

        # The second edition ships: the old files go, the new ones arrive, mid-sequence.
        shutil.rmtree(folder)
        shutil.copytree(LESSONS / "no-contact", folder)
        await tick_until(parts, clock, transport, sent=100)
        assert parts.library.error is None
        history = await recorded(parts)
    finally:
        await parts.close()

    new = second_edition()
    after = history[12:]
    assert len(history) == len(set(history)), "a lesson was sent twice"
    assert after[-1] == CLOSING_ID
    # First the new safety lessons they had passed (the danger of leaving, phone and accounts,
    # money and the law, the return with charm), once each, in catch_up's order ...
    assert new.catch_up == CATCH_UP
    assert after[: len(CATCH_UP)] == list(CATCH_UP)
    # ... then every second-edition lesson after where the reader was (smear-campaigns
    # survives), in order, to the end: nothing skipped.
    start = new.order.index("smear-campaigns") + 1
    expected = [lesson for lesson in new.order[start:] if lesson not in FIRST_ORDER[:12]]
    assert after[len(CATCH_UP) : -1] == expected
    assert after[len(CATCH_UP)] == "pressure-to-reconcile"
    assert "the-self-blame-loop" in after  # the lesson naming suicidal thoughts and 988
    # The emails number the days of the second edition: 1-12, the four safety lessons by their
    # own days, then 15 to 30, then the closing.
    days = sent_in_order(transport)
    assert days == [*range(1, 13), 4, 6, 7, 11, *range(15, 31), None]


@pytest.fixture(scope="module", name="new")
def shipped_second_edition() -> Sequence:
    """The shipped second edition, loaded once for the progress-rule checks."""
    return second_edition()


@pytest.mark.parametrize("had_days", range(0, 31))
def test_every_first_edition_reader_finishes_without_repeats(new: Sequence, had_days: int) -> None:
    had = list(FIRST_ORDER[:had_days])
    rest = continuation(new, had)
    assert rest[-1] == CLOSING_ID
    lessons = rest[:-1]
    assert len(set(had + lessons)) == len(had) + len(lessons), "a lesson was sent twice"
    assert all(lesson in new.positions for lesson in lessons)
    # Every new safety lesson reaches every reader, whatever day they had reached.
    assert set(CATCH_UP) <= {*had, *lessons}, "a safety lesson never came"
    # The ones they had passed come first, in catch_up's order; the rest in the new order,
    # with nothing after their place (their last lesson that survives) skipped.
    place = next((new.positions[x] for x in reversed(had) if x in new.positions), -1)
    missed = [lesson for lesson in CATCH_UP if new.positions[lesson] < place and lesson not in had]
    assert lessons[: len(missed)] == missed
    onward = lessons[len(missed) :]
    assert onward == [lesson for lesson in new.order[place + 1 :] if lesson not in had]
    # Whoever they are, they reach the last lesson (unless they already had it).
    assert new.order[-1] in [*had, *lessons]


def test_the_first_edition_is_what_was_shipped(new: Sequence) -> None:
    # The stand-in must match the first edition's shape: 30 days, phases on days 1-4, 5-10,
    # 11-15, 16-19, 20-25, 26-30, ids that still exist kept as they were.
    assert len(FIRST_ORDER) == len(set(FIRST_ORDER)) == 30
    days = [len(ids) for _, ids in FIRST_EDITION]
    assert days == [3, 1, 6, 5, 4, 6, 5]
    surviving = [lesson for lesson in FIRST_ORDER if lesson in new.positions]
    assert len(surviving) == 22
    # The second edition still begins and ends where the first did.
    assert new.order[0] == FIRST_ORDER[0]
    assert new.order[-1] == FIRST_ORDER[-1]
