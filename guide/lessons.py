"""Lesson sequences: the YAML model, the loader, and the checker admins run before going live."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guide.errors import LessonError, Problem
from guide.lessonfile import FileChecker, display
from guide.render import check_body
from guide.yamlsrc import Mapping, SourceList

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CADENCE = re.compile(r"^every ([1-9][0-9]?) days?$")
SEQUENCE_FILE = "sequence.yaml"
SEQUENCE_KEYS = {"id", "title", "description", "cadence", "phases", "lessons", "catch_up"}
LESSON_REQUIRED = ("id", "title", "subject", "phase", "body", "reflection")
LESSON_OPTIONAL = ("discreet_subject", "content_note")
WORDS_PER_MINUTE = 200


@dataclass(frozen=True)
class Phase:
    """A named part of a sequence, such as 'Flying monkeys'."""

    id: str
    title: str


@dataclass(frozen=True)
class Lesson:
    """One day's email as the admin wrote it."""

    id: str
    title: str
    subject: str
    phase: str
    body: str
    reflection: str
    discreet_subject: str = ""
    content_note: str = ""
    path: Path = Path()
    body_line: int = 1

    @property
    def words(self) -> int:
        """Words in the body, as a reader counts them."""
        return len(self.body.split())

    @property
    def reading_minutes(self) -> int:
        """Rounded-up reading time at an unhurried pace."""
        return max(1, -(-self.words // WORDS_PER_MINUTE))


@dataclass(frozen=True)
class Sequence:
    """An ordered list of lessons sent one per cadence period."""

    id: str
    title: str
    description: str
    cadence_days: int
    phases: tuple[Phase, ...]
    lessons: tuple[Lesson, ...]
    path: Path = Path()
    # Lessons a reader who has passed them without having them gets next (guide/progress.py).
    catch_up: tuple[str, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({lesson.id: i for i, lesson in enumerate(self.lessons)})
        object.__setattr__(self, "_order", tuple(lesson.id for lesson in self.lessons))

    @property
    def order(self) -> tuple[str, ...]:
        """Lesson ids in sending order."""
        return self._order

    @property
    def positions(self) -> dict[str, int]:
        """Lesson id → 0-based position (do not modify)."""
        return self._index

    def __len__(self) -> int:
        return len(self.lessons)

    def lesson_on_day(self, day: int) -> Lesson:
        """The lesson sent on 1-based `day`; IndexError outside the sequence."""
        if not 1 <= day <= len(self.lessons):
            raise IndexError(f"day {day} is outside 1..{len(self.lessons)}")
        return self.lessons[day - 1]

    def day_of(self, lesson_id: str) -> int | None:
        """The 1-based day of a lesson id in the current order, or None if it was removed."""
        index = self._index.get(lesson_id)
        return None if index is None else index + 1

    def phase_title(self, phase_id: str) -> str:
        """The title of a phase id."""
        return next((p.title for p in self.phases if p.id == phase_id), phase_id)


def _parse_cadence(value: Any) -> int | None:
    if value in (None, "daily"):
        return 1
    if value == "weekly":
        return 7
    match = _CADENCE.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def check_sequence(folder: Path, root: Path | None = None) -> tuple[Sequence | None, list[Problem]]:
    """Load one sequence folder; return it (None if unusable) and every problem found.

    Every file must be inside `root` (the lessons folder; default `folder`), links included.
    """
    problems: list[Problem] = []
    root = root or folder
    seq_file = FileChecker(folder / SEQUENCE_FILE, display(folder / SEQUENCE_FILE), problems, root)
    data = seq_file.load()
    if data is None:
        return None, problems
    seq_file.unknown(data, SEQUENCE_KEYS)
    seq_id = seq_file.text(data, "id", required=True, one_line=True)
    if seq_id and not SLUG.match(seq_id):
        seq_file.add(data.line_of("id"), "id", "must be lowercase words joined by hyphens")
    title = seq_file.text(data, "title", required=True, one_line=True)
    description = seq_file.text(data, "description", required=False, one_line=False).strip()
    cadence = _parse_cadence(data.get("cadence"))
    if cadence is None:
        seq_file.add(data.line_of("cadence"), "cadence", "must be daily, weekly or 'every N days'")

    phases = _check_phases(seq_file, data)
    listed = _check_order(seq_file, data)
    phase_rank = {p.id: i for i, p in enumerate(phases)}

    lessons: dict[str, Lesson] = {}
    files = sorted(p for p in folder.glob("*.yaml") if p.name != SEQUENCE_FILE)
    for path in files:
        lesson = _check_lesson(path, phase_rank, problems, root)
        if lesson is None:
            continue
        if lesson.id in lessons:
            other = display(lessons[lesson.id].path)
            problems.append(
                Problem(display(path), 1, "id", f"duplicate id {lesson.id!r}, also in {other}")
            )
            continue
        lessons[lesson.id] = lesson
        if lesson.id not in listed:
            problems.append(
                Problem(
                    display(path),
                    1,
                    "",
                    f"not listed in {SEQUENCE_FILE} lessons (add it or delete the file)",
                )
            )
    ordered: list[Lesson] = []
    for lesson_id, line in listed.items():
        if lesson_id in lessons:
            ordered.append(lessons[lesson_id])
        elif not any(p.file == display(folder / f"{lesson_id}.yaml") for p in problems):
            seq_file.add(
                line, "lessons", f"{lesson_id!r} is listed but {lesson_id}.yaml does not exist"
            )
    _check_phase_order(seq_file, ordered, phase_rank, listed)
    catch_up = _check_catch_up(seq_file, data, listed)
    if not listed and "lessons" in data:
        seq_file.add(data.line_of("lessons"), "lessons", "must list at least one lesson id")
    if problems:
        return None, problems
    sequence = Sequence(
        id=seq_id,
        title=title,
        description=description,
        cadence_days=cadence or 1,
        phases=tuple(phases),
        lessons=tuple(ordered),
        path=folder,
        catch_up=catch_up,
    )
    return sequence, problems


def _check_phases(seq_file: FileChecker, data: Mapping) -> list[Phase]:
    raw = data.get("phases")
    if not isinstance(raw, SourceList) or not raw:
        seq_file.add(data.line_of("phases"), "phases", "must be a non-empty list of {id, title}")
        return []
    phases: list[Phase] = []
    for index, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
        key = f"phases[{index}]"
        if not isinstance(item, Mapping):
            seq_file.add(line, key, "must be a mapping with id and title")
            continue
        seq_file.unknown(item, {"id", "title"})
        phase_id = seq_file.text(item, "id", required=True, one_line=True)
        phase_title = seq_file.text(item, "title", required=True, one_line=True)
        if phase_id and not SLUG.match(phase_id):
            seq_file.add(line, f"{key}.id", "must be lowercase words joined by hyphens")
        if any(p.id == phase_id for p in phases):
            seq_file.add(line, f"{key}.id", f"duplicate phase id {phase_id!r}")
        phases.append(Phase(phase_id, phase_title))
    return phases


def _check_order(seq_file: FileChecker, data: Mapping) -> dict[str, int]:
    raw = data.get("lessons")
    if raw is None:
        seq_file.add(data.line, "lessons", "is required: the ordered list of lesson ids")
        return {}
    if not isinstance(raw, SourceList):
        seq_file.add(data.line_of("lessons"), "lessons", "must be a list of lesson ids")
        return {}
    listed: dict[str, int] = {}
    for index, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
        if not isinstance(item, str) or not SLUG.match(item):
            seq_file.add(
                line, f"lessons[{index}]", "must be a lesson id (lowercase words joined by hyphens)"
            )
        elif item in listed:
            seq_file.add(
                line,
                f"lessons[{index}]",
                f"{item!r} is listed twice (first on line {listed[item]})",
            )
        else:
            listed[item] = line
    return listed


def _check_catch_up(
    seq_file: FileChecker, data: Mapping, listed: dict[str, int]
) -> tuple[str, ...]:
    raw = data.get("catch_up")
    if raw is None:
        return ()
    if not isinstance(raw, SourceList):
        seq_file.add(data.line_of("catch_up"), "catch_up", "must be a list of lesson ids")
        return ()
    found: dict[str, int] = {}
    for index, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
        key = f"catch_up[{index}]"
        if not isinstance(item, str) or not SLUG.match(item):
            seq_file.add(line, key, "must be a lesson id (lowercase words joined by hyphens)")
        elif item in found:
            seq_file.add(line, key, f"{item!r} is listed twice (first on line {found[item]})")
        elif item not in listed:
            seq_file.add(line, key, f"{item!r} is not in lessons")
        else:
            found[item] = line
    return tuple(found)


def _check_phase_order(
    seq_file: FileChecker, ordered: list[Lesson], rank: dict[str, int], listed: dict[str, int]
) -> None:
    # A lesson that jumps back to an earlier phase is almost always a reordering mistake.
    highest = -1
    for lesson in ordered:
        current = rank.get(lesson.phase, highest)
        if current < highest:
            seq_file.add(
                listed[lesson.id],
                "lessons",
                f"{lesson.id!r} (phase {lesson.phase!r}) is out of phase order",
            )
        highest = max(highest, current)


def _check_lesson(
    path: Path, phase_rank: dict[str, int], problems: list[Problem], root: Path
) -> Lesson | None:
    checker = FileChecker(path, display(path), problems, root)
    before = len(problems)
    data = checker.load()
    if data is None:
        return None
    checker.unknown(data, set(LESSON_REQUIRED) | set(LESSON_OPTIONAL))
    values = {
        key: checker.text(data, key, required=True, one_line=key != "body")
        for key in LESSON_REQUIRED
    }
    for key in LESSON_OPTIONAL:
        values[key] = checker.text(data, key, required=False, one_line=True)
    lesson_id = values["id"]
    if lesson_id and not SLUG.match(lesson_id):
        checker.add(data.line_of("id"), "id", "must be lowercase words joined by hyphens")
    elif lesson_id and lesson_id != path.stem:
        checker.add(data.line_of("id"), "id", f"must match the file name ({path.stem!r})")
    if values["phase"] and phase_rank and values["phase"] not in phase_rank:
        checker.add(
            data.line_of("phase"),
            "phase",
            f"unknown phase {values['phase']!r} (known: {', '.join(phase_rank)})",
        )
    body_line = data.value_lines.get("body", data.line_of("body"))
    if values["body"].strip():
        for offset, message in check_body(values["body"]):
            checker.add(body_line + offset, "body", message)
    if len(problems) > before:
        return None
    return Lesson(
        id=lesson_id,
        title=values["title"],
        subject=values["subject"],
        phase=values["phase"],
        body=values["body"],
        reflection=values["reflection"],
        discreet_subject=values["discreet_subject"],
        content_note=values["content_note"],
        path=path,
        body_line=body_line,
    )


def sequence_folders(root: Path) -> list[Path]:
    """Every folder below `root` holding a sequence.yaml, or `root` itself if it is one."""
    if (root / SEQUENCE_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{SEQUENCE_FILE}"))


def check_library(root: Path) -> tuple[dict[str, Sequence], list[Problem]]:
    """Check every sequence under `root`; return the valid ones and every problem."""
    sequences: dict[str, Sequence] = {}
    problems: list[Problem] = []
    folders = sequence_folders(root)
    if not folders:
        problems.append(
            Problem(display(root), 1, "", f"no {SEQUENCE_FILE} found here or in a subfolder")
        )
    for folder in folders:
        sequence, found = check_sequence(folder, root)
        problems.extend(found)
        if sequence is None:
            continue
        if sequence.id in sequences:
            problems.append(
                Problem(
                    display(folder / SEQUENCE_FILE),
                    1,
                    "id",
                    f"sequence id {sequence.id!r} is used twice",
                )
            )
        sequences[sequence.id] = sequence
    return sequences, problems


def load_library(root: Path) -> dict[str, Sequence]:
    """Every sequence under `root`; LessonError with all problems if any file is invalid."""
    sequences, problems = check_library(root)
    if problems:
        raise LessonError(problems)
    return sequences
