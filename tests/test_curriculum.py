"""Tests for the shipped sequences: shape, phases, length, reading level, discretion, originality.

The helpers (plain_text, syllables, grade, copied_runs, …) are plain functions taking a Sequence
or a Lesson so another sequence's tests can import them; a new sequence joins the shared checks
by adding a Shape to SHAPES.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guide.lessons import Lesson, Sequence, check_sequence
from tests.tools.fingerprint_seed import RUN, fingerprint, normalise, read_fingerprints, runs

REPO = Path(__file__).resolve().parent.parent
LESSONS = REPO / "lessons"
# Hashed 8-word runs of the source article, not the article: its sentences stay out of the repo.
SEED_FINGERPRINTS = REPO / "tests" / "data" / "seed-fingerprints.txt"

REQUIRED = ("id", "title", "subject", "discreet_subject", "phase", "body", "reflection")
MIN_WORDS, MAX_WORDS = 300, 450
MAX_GRADE = 6.0
# Words a discreet subject must not contain: it may show on a shared screen or lock screen.
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
    "safety",
    "danger",
    "leav",
    "violence",
)
# The phase title is printed in every non-discreet email of that phase.
PHASE_TITLE_AVOID = ("narciss", "rage", "abuse", "monkey", "enabler", "abuser")
# Headings invite; they do not order the reader about ("Do not carry messages", "Share less").
ORDER_HEADINGS = re.compile(
    r"^#{2,6}\s+(do|don't|never|stop|you must|must|share|keep|look|be|take|try|make|tell|write|"
    r"reach|plan|give|move|come|change|check|notice|trust|protect|use|stay|go|get)\b",
    re.I,
)


@dataclass(frozen=True)
class Shape:
    """What one shipped sequence must look like: its days, its phases, what it must say."""

    sequence_id: str
    days: int
    phase_days: tuple[tuple[str, int, int], ...]  # (phase id, first day, last day)
    # (lesson id, pattern): the lesson's body must match the pattern (case-insensitive).
    must_say: tuple[tuple[str, str], ...] = ()


NO_CONTACT = Shape(
    "no-contact",
    30,
    (
        ("going-no-contact", 1, 7),
        ("narcissistic-rage", 8, 12),
        ("flying-monkeys", 13, 16),
        ("enablers", 17, 19),
        ("rumination", 20, 25),
        ("closure", 26, 30),
    ),
    must_say=(
        # The warning signs that mean "talk to an advocate now", in the danger-of-leaving lesson.
        ("when-leaving-raises-the-risk", r"threat\w* to kill"),
        ("when-leaving-raises-the-risk", r"chok\w*.{0,40}strangl\w*|strangl\w*.{0,40}chok\w*"),
        ("when-leaving-raises-the-risk", r"weapon"),
        ("when-leaving-raises-the-risk", r"stalk"),
        ("when-leaving-raises-the-risk", r"child\w*.{0,60}pet|pet\w*.{0,60}child"),
        ("when-leaving-raises-the-risk", r"advocate"),
        # Suicidal thoughts named plainly, once, with where to turn.
        ("the-self-blame-loop", r"suicid|end your life|take your own life"),
        ("the-self-blame-loop", r"\b988\b"),
        # Self-contained: the footer may carry no line for the reader's country.
        ("the-self-blame-loop", r"findahelpline\.com"),
        # Where the guide speaks of their anger it names no one and excuses nothing.
        ("why-no-contact-is-hard", r"diagnose"),
        ("why-distance-threatens-the-mask", r"power and control"),
        ("why-distance-threatens-the-mask", r"their choice"),
    ),
)
SHAPES = (NO_CONTACT,)

_MARKUP = re.compile(r"\*\*|__|[*_`]")
_LIST_OR_HEADING = re.compile(r"^(#{2,6}\s+|[-*+]\s+|\d+[.)]\s+)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)]*(?=\s|$)")
_WORD = re.compile(r"[A-Za-z0-9\u2019']+")


def plain_text(markdown: str) -> str:
    """A body as it is read: markup removed, each heading and list item a sentence of its own."""
    lines = []
    for raw in markdown.splitlines():
        line = raw.strip().removeprefix(">").strip()
        unit = bool(_LIST_OR_HEADING.match(line))
        line = _MARKUP.sub("", _LINK.sub(r"\1", _LIST_OR_HEADING.sub("", line))).strip()
        # A list's lead-in ("You may hear:") and a bare heading or item end where the line ends.
        if line.endswith(":"):
            line = line[:-1] + "."
        elif line and (unit or raw.strip()) and line[-1] not in ".!?\"'\u201d\u2019)":
            line += "."
        lines.append(line)
    return "\n".join(lines)


def sentences(text: str) -> list[str]:
    """The sentences of plain text, split at ., ! or ? and at line ends."""
    pieces = [p for line in text.splitlines() for p in _SENTENCE_END.split(line)]
    return [piece for piece in pieces if _WORD.search(piece)]


def syllables(word: str) -> int:
    """An estimate of a word's spoken syllables (vowel groups, with English's common exceptions)."""
    letters = re.sub(r"[^a-z]", "", word.lower())
    if not letters:
        return max(1, len(re.sub(r"\D", "", word)))  # a number is read digit by digit: "988"
    if len(letters) <= 3:
        return 1
    # A silent final e, -es or -ed ("made", "lives", "asked"), but not "little" or "wanted".
    letters = re.sub(r"(?<![aeiouy])e$", "", letters) if not letters.endswith("le") else letters
    letters = re.sub(r"(?<=[^aeiouytdcsxzg])e[sd]$", "", letters)
    count = len(re.findall(r"[aeiouy]+", letters))
    count += len(re.findall(r"(?<![tcsgx])i[aou]|[aeiouy]ing$|uie", letters))  # "radio", "being"
    count -= len(re.findall(r"[^aeiouy]ely$", letters))  # "lonely", "safely"
    return max(1, count)


def grade(text: str) -> float:
    """Flesch-Kincaid grade: 0.39 words per sentence + 11.8 syllables per word - 15.59."""
    words = _WORD.findall(text)
    count = len(sentences(text))
    if not words or not count:
        return 0.0
    per_word = sum(syllables(word) for word in words) / len(words)
    return 0.39 * len(words) / count + 11.8 * per_word - 15.59


def body_grade(lesson: Lesson) -> float:
    """The Flesch-Kincaid grade of a lesson's body as a reader sees it."""
    return grade(plain_text(lesson.body))


def fields(lesson: Lesson) -> dict[str, str]:
    """The reader-visible text of a lesson, field by field."""
    return {
        "title": lesson.title,
        "subject": lesson.subject,
        "discreet_subject": lesson.discreet_subject,
        "content_note": lesson.content_note,
        "body": lesson.body,
        "reflection": lesson.reflection,
    }


def phase_days(sequence: Sequence) -> list[tuple[str, int, int]]:
    """Each phase with the first and last day of its lessons, in the order they are sent."""
    found: list[tuple[str, int, int]] = []
    for day, lesson in enumerate(sequence.lessons, start=1):
        if found and found[-1][0] == lesson.phase:
            found[-1] = (lesson.phase, found[-1][1], day)
        else:
            found.append((lesson.phase, day, day))
    return found


def sections(body: str) -> list[str]:
    """A body cut at its ## headings, each part with its heading, as plain text."""
    parts = re.split(r"(?m)^(?=#{2,6}\s)", body)
    return [plain_text(part).strip() for part in parts if part.strip()]


def revealing(subject: str) -> list[str]:
    """The words of REVEALING that a discreet subject gives away."""
    return [word for word in REVEALING if word in subject.lower()]


def copied_runs(sequence: Sequence, seed: frozenset[str]) -> list[str]:
    """Every run of lesson text whose fingerprint is the seed's, as `file (field): words`."""
    return [
        f"{lesson.path.relative_to(REPO)} ({field}): {' '.join(run)}"
        for lesson in sequence.lessons
        for field, text in fields(lesson).items()
        for run in sorted(runs(normalise(text)))
        if fingerprint(run) in seed
    ]


def load_sequence(sequence_id: str) -> Sequence:
    """A shipped sequence, by id, checked on its own (another folder's problems are not its)."""
    sequence, problems = check_sequence(LESSONS / sequence_id, LESSONS)
    assert sequence is not None and not problems, "\n".join(str(p) for p in problems)
    return sequence


@pytest.fixture(scope="module", params=SHAPES, ids=lambda shape: shape.sequence_id)
def shape(request: pytest.FixtureRequest) -> Shape:
    """Each shipped sequence's expected shape in turn."""
    assert isinstance(request.param, Shape)
    return request.param


@pytest.fixture(scope="module")
def sequence(shape: Shape) -> Sequence:
    """The shipped sequence the shape describes."""
    return load_sequence(shape.sequence_id)


@pytest.fixture(scope="module")
def no_contact() -> Sequence:
    """The shipped no-contact sequence, for the checks that are its own."""
    return load_sequence("no-contact")


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


def lessons_of(sequence: Sequence) -> Iterator[tuple[int, Lesson]]:
    """(day, lesson) pairs, day 1 first."""
    return enumerate(sequence.lessons, start=1)


# --- the shared checks, for every sequence in SHAPES --------------------------------------------


def test_lesson_count_and_cadence(sequence: Sequence, shape: Shape) -> None:
    assert len(sequence) == shape.days
    assert len({lesson.id for lesson in sequence.lessons}) == shape.days
    assert sequence.cadence_days == 1


def test_phases_in_order_with_their_days(sequence: Sequence, shape: Shape) -> None:
    assert [phase.id for phase in sequence.phases] == [phase for phase, _, _ in shape.phase_days]
    assert phase_days(sequence) == list(shape.phase_days)


def test_phase_titles_can_sit_in_an_inbox(sequence: Sequence) -> None:
    for phase in sequence.phases:
        found = [word for word in PHASE_TITLE_AVOID if word in phase.title.lower()]
        assert not found, f"{sequence.id}: phase {phase.id}: {phase.title!r} has {found}"


def test_every_field_present_and_non_empty(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        for name in REQUIRED:
            value = getattr(lesson, name)
            assert isinstance(value, str) and value.strip(), f"{lesson.id}: {name} is empty"


def test_bodies_between_300_and_450_words(sequence: Sequence) -> None:
    outside = [
        f"{lesson.id}: {lesson.words} words"
        for lesson in sequence.lessons
        if not MIN_WORDS <= lesson.words <= MAX_WORDS
    ]
    assert outside == []


def test_bodies_read_at_grade_six_or_below(sequence: Sequence) -> None:
    hard = [
        f"{lesson.id}: grade {body_grade(lesson):.1f}"
        for lesson in sequence.lessons
        if body_grade(lesson) > MAX_GRADE
    ]
    assert hard == []


def test_discreet_subjects_reveal_nothing(sequence: Sequence) -> None:
    for lesson in sequence.lessons:
        found = revealing(lesson.discreet_subject)
        assert not found, f"{lesson.id}: {lesson.discreet_subject!r} has {found}"


def test_headings_invite_rather_than_order(sequence: Sequence) -> None:
    orders = [
        f"{lesson.id}: {line.strip()}"
        for lesson in sequence.lessons
        for line in lesson.body.splitlines()
        if ORDER_HEADINGS.match(line.strip())
    ]
    assert orders == []


def test_lessons_say_what_they_must(sequence: Sequence, shape: Shape) -> None:
    by_id = {lesson.id: lesson for lesson in sequence.lessons}
    missing = [
        f"{lesson_id}: /{pattern}/"
        for lesson_id, pattern in shape.must_say
        if lesson_id not in by_id
        or not re.search(pattern, plain_text(by_id[lesson_id].body), re.I | re.S)
    ]
    assert missing == []


def test_no_eight_word_run_from_the_seed(
    sequence: Sequence, seed_fingerprints: frozenset[str]
) -> None:
    assert len(seed_fingerprints) > 1000, "the seed fingerprints look truncated"
    copied = copied_runs(sequence, seed_fingerprints)
    assert copied == [], "lesson text copies the seed article:\n" + "\n".join(copied)


# --- the helpers can fail -----------------------------------------------------------------------


def test_the_run_check_can_fail(no_contact: Sequence, seed_fingerprints: frozenset[str]) -> None:
    # The article cannot be recovered from its hashes, so plant a canary instead: a run of a
    # lesson's body added to the seed's fingerprints must be reported, with file and words.
    lesson = no_contact.lessons[0]
    canary = normalise(lesson.body)[10 : 10 + RUN]
    planted = seed_fingerprints | {fingerprint(canary)}
    report = copied_runs(no_contact, planted)
    assert f"{lesson.path.relative_to(REPO)} (body): {' '.join(canary)}" in report
    # The same words re-punctuated, upper-cased and with a curly apostrophe still match.
    first, *rest = canary
    lifted = "\u201c" + " \u2014 ".join([f"{first[0]}\u2019{first[1:]}", *rest]).upper() + "!\u201d"
    assert {fingerprint(run) for run in runs(normalise(lifted))} & planted


def test_normalise_treats_apostrophes_and_punctuation_alike() -> None:
    assert normalise("It’s the Hotline's “seven”—times!") == [
        "its",
        "the",
        "hotlines",
        "seven",
        "times",
    ]


@pytest.mark.parametrize(
    ("word", "count"),
    [
        ("you", 1),
        ("made", 1),
        ("asked", 1),
        ("lives", 1),
        ("little", 2),
        ("wanted", 2),
        ("places", 2),
        ("people", 2),
        ("lonely", 2),
        ("being", 2),
        ("radio", 3),
        ("someone", 2),
        ("together", 3),
        ("relationship", 4),
        ("understanding", 4),
        ("responsibility", 6),
        ("988", 3),
    ],
)
def test_syllable_estimate(word: str, count: int) -> None:
    assert syllables(word) == count


def test_grade_tells_plain_from_dense_writing() -> None:
    plain = "You are safe here. Take a breath. You can stop at any time. This is your pace."
    dense = (
        "Comprehensive understanding of interpersonal victimisation necessitates "
        "considerable psychological sophistication, particularly regarding "
        "intergenerational transmission of maladaptive relational characteristics."
    )
    assert grade(plain) < 2 < MAX_GRADE < 20 < grade(dense)


def test_plain_text_makes_headings_and_items_sentences() -> None:
    body = "## What it is\n\nYou may hear:\n\n- **They miss you**\n- Family is family.\n"
    assert sentences(plain_text(body)) == [
        "What it is",
        "You may hear",
        "They miss you",
        "Family is family",
    ]


# --- what only the no-contact guide must say ----------------------------------------------------


def test_hotline_figure_is_attributed(no_contact: Sequence) -> None:
    attributed = [
        lesson.id
        for lesson in no_contact.lessons
        for paragraph in lesson.body.split("\n\n")
        if "National Domestic Violence Hotline" in paragraph
        and re.search(r"\bseven\b", paragraph, re.IGNORECASE)
    ]
    assert attributed, "no paragraph credits the 'seven attempts' figure to the Hotline"


@pytest.mark.parametrize("name", ["Lowen", "Kohut"])
def test_sources_are_named(no_contact: Sequence, name: str) -> None:
    assert any(re.search(rf"\b{name}\b", lesson.body) for lesson in no_contact.lessons), name


def test_no_unsourced_authority_and_no_diagnosis(no_contact: Sequence) -> None:
    for lesson in no_contact.lessons:
        text = plain_text(lesson.body).lower()
        for phrase in ("many medical professionals", "narcissistic rage", "childish"):
            assert phrase not in text, f"{lesson.id}: {phrase!r}"


def test_suicidal_thoughts_named_once(no_contact: Sequence) -> None:
    naming = [lesson.id for lesson in no_contact.lessons if re.search(r"suicid", lesson.body, re.I)]
    assert naming == ["the-self-blame-loop"]


def test_closing_safety_line_is_not_repeated(no_contact: Sequence) -> None:
    # The first edition ended fifteen lessons with the same line until it became noise.
    repeating = [
        lesson.id
        for lesson in no_contact.lessons
        if re.search(r"(valid|real) (path|choice)", lesson.body, re.I)
    ]
    assert len(repeating) <= 3, repeating


BLOCKING = re.compile(r"\bblock", re.I)
BLOCKING_RISK = re.compile(r"escalat|worse|anger|angr|danger|risk", re.I)
RECORDS = re.compile(r"screenshot|record of|keep (a )?(copies|record|notes)|save anything", re.I)
SHARED_ACCOUNTS = re.compile(r"cloud|shared (account|device|phone)|synced", re.I)


def unqualified(sequence: Sequence, topic: re.Pattern[str], caveat: re.Pattern[str]) -> list[str]:
    """The sections of a sequence's lessons that raise `topic` without `caveat`."""
    return [
        f"{lesson.id}: {part[:70]!r}"
        for lesson in sequence.lessons
        for part in sections(lesson.body)
        if topic.search(part) and not caveat.search(part)
    ]


def test_blocking_always_comes_with_its_risk(no_contact: Sequence) -> None:
    assert unqualified(no_contact, BLOCKING, BLOCKING_RISK) == []


def test_keeping_records_mentions_shared_accounts(no_contact: Sequence) -> None:
    assert unqualified(no_contact, RECORDS, SHARED_ACCOUNTS) == []


def test_the_caveat_checks_can_fail(no_contact: Sequence) -> None:
    lesson = no_contact.lessons[0]
    bare = dataclasses.replace(lesson, body="## Tools\n\nBlocking is fine. Keep screenshots.\n")
    planted = Sequence("demo", "Demo", "", 1, no_contact.phases, (bare,))
    assert unqualified(planted, BLOCKING, BLOCKING_RISK) == [
        f"{lesson.id}: 'Tools.\\n\\nBlocking is fine. Keep screenshots.'"
    ]
    assert len(unqualified(planted, RECORDS, SHARED_ACCOUNTS)) == 1
