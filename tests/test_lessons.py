"""Tests for the lesson loader and checker, and the `lessons check|list|preview` commands."""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guide.errors import LessonError, Problem
from guide.lessons import Lesson, check_library, check_sequence, load_library
from guide.render import markdown_to_html, markdown_to_text, render_template_body

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "lessons" / "no-contact"

# Line numbers below are part of the tests: keep each text's lines exactly as they are.
SEQUENCE = """\
id: demo
title: Demo sequence
cadence: daily
phases:
  - id: first
    title: First phase
  - id: second
    title: Second phase
lessons:
  - alpha
  - beta
"""
# Line 6 is `body: |`, so body line 1 is file line 7 and body line 3 is file line 9.
ALPHA = """\
id: alpha
title: Alpha title
subject: Alpha subject
discreet_subject: A quiet note
phase: first
body: |
  Day {{ day }} of {{ total_days }}.

  Some **bold** text and a [link](https://example.org/).
reflection: What did you notice today?
"""
BETA = """\
id: beta
title: Beta title
subject: Beta subject
phase: second
body: |
  A plain second lesson.
reflection: What would you tell a friend?
"""
GAMMA = BETA.replace("beta", "gamma")
BODY_LINE_1 = "Day {{ day }} of {{ total_days }}."
BODY_LINE_3 = "Some **bold** text and a [link](https://example.org/)."


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A valid two-lesson sequence at tmp_path/lessons/demo."""
    demo = tmp_path / "lessons" / "demo"
    demo.mkdir(parents=True)
    for name, text in (("sequence", SEQUENCE), ("alpha", ALPHA), ("beta", BETA)):
        (demo / f"{name}.yaml").write_text(text, encoding="utf-8")
    return demo


def edit(path: Path, *changes: tuple[str, str]) -> None:
    """Apply text replacements to a file; each `old` must occur exactly once."""
    text = path.read_text(encoding="utf-8")
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} not found once in {path.name}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def where(problems: list[Problem]) -> list[tuple[str, int, str]]:
    """(file name, line, field) of each problem, sorted."""
    return sorted((Path(p.file).name, p.line, p.field) for p in problems)


def only_problem(folder: Path) -> Problem:
    """The single problem check_library finds under the folder's parent."""
    sequences, problems = check_library(folder.parent)
    assert len(problems) == 1, "\n".join(map(str, problems))
    assert sequences == {}
    return problems[0]


# --- the valid case and the Problem type ------------------------------------------------------


def test_valid_sequence_loads(folder: Path) -> None:
    sequences, problems = check_library(folder.parent)
    assert problems == []
    sequence = sequences["demo"]
    assert sequence.title == "Demo sequence"
    assert sequence.cadence_days == 1
    assert [p.id for p in sequence.phases] == ["first", "second"]
    assert [lesson.id for lesson in sequence.lessons] == ["alpha", "beta"]
    alpha = sequence.lesson_on_day(1)
    assert alpha.discreet_subject == "A quiet note"
    assert alpha.body_line == 7
    assert alpha.body.startswith(BODY_LINE_1)
    assert sequence.day_of("beta") == 2
    assert sequence.day_of("removed") is None
    assert load_library(folder.parent)["demo"] == sequence
    # A folder that is itself a sequence can be checked directly too.
    assert check_sequence(folder)[0] == sequence


def test_valid_body_with_day_and_total_days_renders(folder: Path) -> None:
    edit(folder / "alpha.yaml", ("  Day {{ day }}", "  {{ lesson_title }}: Day {{ day }}"))
    sequence = load_library(folder.parent)["demo"]
    lesson = sequence.lessons[0]
    body = render_template_body(
        lesson.body,
        {
            "day": sequence.day_of(lesson.id),
            "total_days": len(sequence),
            "sequence_title": sequence.title,
            "lesson_title": lesson.title,
        },
    )
    assert body.startswith("Alpha title: Day 1 of 2.\n")
    html = markdown_to_html(body)
    assert "Day 1 of 2." in html
    assert '<a style="color:#2d5b5f;text-decoration:underline;" href="https://example.org/"' in html
    assert "Some bold text and a link (https://example.org/)." in markdown_to_text(body)


def test_problem_str_is_file_line_field_message() -> None:
    assert str(Problem("a/b.yaml", 3, "title", "must be text")) == "a/b.yaml:3: title: must be text"
    assert str(Problem("a/b.yaml", 1, "", "not listed")) == "a/b.yaml:1: not listed"


def test_reading_time_and_words() -> None:
    lesson = Lesson("x", "T", "S", "p", "word " * 401, "R")
    assert lesson.words == 401
    assert lesson.reading_minutes == 3
    assert Lesson("x", "T", "S", "p", "one", "R").reading_minutes == 1


# --- every error class, with its exact line ---------------------------------------------------

LESSON_ERRORS = [
    # (id, changes to alpha.yaml, line, field, message fragment)
    (
        "yaml-syntax",
        [("subject: Alpha subject", "subject: Alpha: subject")],
        3,
        "",
        "YAML syntax error at column 15: mapping values are not allowed here",
    ),
    (
        "yaml-missing-colon",
        [("subject: Alpha subject", "subject Alpha subject")],
        3,
        "",
        "YAML syntax error at column 1: could not find expected ':'",
    ),
    (
        "yaml-unclosed-quote",
        [("title: Alpha title", 'title: "Alpha title')],
        2,
        "",
        "YAML syntax error at column 8",
    ),
    (
        "duplicate-key",
        [("subject: Alpha subject\n", "subject: Alpha subject\ntitle: Again\n")],
        4,
        "",
        "YAML syntax error at column 1: duplicate key 'title'",
    ),
    (
        "missing-required",
        [("reflection: What did you notice today?\n", "")],
        1,
        "reflection",
        "is required",
    ),
    ("unknown-key", [("reflection:", "author: Sam\nreflection:")], 10, "author", "unknown key"),
    (
        "wrong-type-list",
        [("title: Alpha title", "title: [Alpha, title]")],
        2,
        "title",
        "must be text",
    ),
    (
        "wrong-type-number",
        [("subject: Alpha subject", "subject: 42")],
        3,
        "subject",
        "must be text",
    ),
    (
        "empty-body",
        [(f"body: |\n  {BODY_LINE_1}\n\n  {BODY_LINE_3}\n", 'body: "  "\n')],
        6,
        "body",
        "must not be empty",
    ),
    (
        "id-not-file-name",
        [("id: alpha", "id: alpha-two")],
        1,
        "id",
        "must match the file name ('alpha')",
    ),
    (
        "bad-slug",
        [("id: alpha", "id: Alpha_One")],
        1,
        "id",
        "must be lowercase words joined by hyphens",
    ),
    ("unknown-phase", [("phase: first", "phase: third")], 5, "phase", "unknown phase 'third'"),
    (
        "subject-newline",
        [("subject: Alpha subject", 'subject: "Alpha\\nsubject"')],
        3,
        "subject",
        "must be one line",
    ),
    (
        "subject-u2028",
        [("subject: Alpha subject", 'subject: "Alpha\\Lsubject"')],
        3,
        "subject",
        "must be one line",
    ),
    (
        "subject-too-long",
        [("subject: Alpha subject", "subject: " + "x" * 151)],
        3,
        "subject",
        "is 151 characters",
    ),
    (
        "discreet-subject-too-long",
        [("discreet_subject: A quiet note", "discreet_subject: " + "y " * 80)],
        4,
        "discreet_subject",
        "is 159 characters",
    ),
    (
        "control-character",
        [("title: Alpha title", 'title: "Alpha\\x07title"')],
        2,
        "title",
        "contains a control character",
    ),
    ("raw-html-block", [(BODY_LINE_3, "<div>Hello</div>")], 9, "body", "raw HTML is not allowed"),
    (
        "inline-html",
        [(BODY_LINE_3, "Some <br> text.")],
        9,
        "body",
        "raw HTML '<br>' is not allowed",
    ),
    (
        "image",
        [(BODY_LINE_3, "![a lake](https://example.org/lake.png)")],
        9,
        "body",
        "images are not allowed",
    ),
    (
        "javascript-link",
        [(BODY_LINE_3, "[click](javascript:alert(1))")],
        9,
        "body",
        "link 'javascript:alert(1)' must start with https:// or mailto:",
    ),
    (
        "data-link",
        [(BODY_LINE_3, "[click](data:text/html,hi)")],
        9,
        "body",
        "link 'data:text/html,hi' must start with https://",
    ),
    (
        "http-link",
        [(BODY_LINE_3, "[site](http://example.org/)")],
        9,
        "body",
        "link 'http://example.org/' must start",
    ),
    (
        "http-autolink",
        [(BODY_LINE_3, "See <http://example.org/>.")],
        9,
        "body",
        "link 'http://example.org/' must start",
    ),
    ("h1", [(BODY_LINE_3, "# Big heading")], 9, "body", "use ## for headings"),
    ("jinja-syntax", [(BODY_LINE_3, "Some {{ day + }} text.")], 9, "body", "template syntax error"),
    ("jinja-syntax-line-1", [(BODY_LINE_1, "Day {{ day }")], 7, "body", "template syntax error"),
    (
        "jinja-unclosed-block",
        [(BODY_LINE_3, "{% if day %} open")],
        9,
        "body",
        "template syntax error",
    ),
    (
        "jinja-unknown-filter",
        [(BODY_LINE_3, "{{ day | shout }}")],
        9,
        "body",
        "template syntax error: No filter named 'shout'",
    ),
    (
        "jinja-undefined",
        [(BODY_LINE_3, "Hello {{ name }}.")],
        9,
        "body",
        "undefined template variable 'name'",
    ),
    (
        # The variable's name also appears as a word on an earlier line: report the tag's line.
        "jinja-undefined-word-earlier",
        [(BODY_LINE_1, "A name is a gift."), (BODY_LINE_3, "Hello {{ name }}.")],
        9,
        "body",
        "undefined template variable 'name'",
    ),
    # Errors that only rendering finds are caught by the check, not by the dispatch tick.
    ("jinja-unsafe-attribute", [(BODY_LINE_3, "{{ day.__class__ }}")], 9, "body", "is unsafe"),
    ("jinja-render-error", [(BODY_LINE_3, "{{ total_days / 0 }}")], 9, "body", "template error"),
]


@pytest.mark.parametrize(
    ("changes", "line", "field", "message"),
    [case[1:] for case in LESSON_ERRORS],
    ids=[case[0] for case in LESSON_ERRORS],
)
def test_lesson_error_names_file_line_and_field(
    folder: Path, changes: list[tuple[str, str]], line: int, field: str, message: str
) -> None:
    edit(folder / "alpha.yaml", *changes)
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == ("alpha.yaml", line, field)
    assert problem.file == str(folder / "alpha.yaml")
    assert message in problem.message
    assert str(problem).startswith(f"{folder / 'alpha.yaml'}:{line}: ")


def test_subject_of_exactly_the_limit_is_accepted(folder: Path) -> None:
    edit(folder / "alpha.yaml", ("subject: Alpha subject", "subject: " + "x" * 150))
    assert check_library(folder.parent)[1] == []


def test_top_level_not_a_mapping(folder: Path) -> None:
    (folder / "alpha.yaml").write_text("- alpha\n- beta\n", encoding="utf-8")
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == ("alpha.yaml", 1, "")
    assert "must be a mapping" in problem.message


def test_two_files_with_the_same_id(folder: Path) -> None:
    # The id must equal the file name, so a copied file is where a duplicate id shows up.
    (folder / "gamma.yaml").write_text(ALPHA, encoding="utf-8")
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == ("gamma.yaml", 1, "id")
    assert "must match the file name ('gamma')" in problem.message


def test_two_sequences_with_the_same_id(folder: Path) -> None:
    shutil.copytree(folder, folder.parent / "demo-copy")
    sequences, problems = check_library(folder.parent)
    assert where(problems) == [("sequence.yaml", 1, "id")]
    assert problems[0].file == str(folder.parent / "demo-copy" / "sequence.yaml")
    assert "sequence id 'demo' is used twice" in problems[0].message
    assert list(sequences) == ["demo"]


def test_listed_but_file_missing(folder: Path) -> None:
    (folder / "beta.yaml").unlink()
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == (
        "sequence.yaml",
        11,
        "lessons",
    )
    assert problem.message == "'beta' is listed but beta.yaml does not exist"


def test_file_present_but_not_listed(folder: Path) -> None:
    (folder / "gamma.yaml").write_text(GAMMA, encoding="utf-8")
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == ("gamma.yaml", 1, "")
    assert "not listed in sequence.yaml" in problem.message


def test_id_listed_twice(folder: Path) -> None:
    edit(folder / "sequence.yaml", ("  - beta\n", "  - beta\n  - alpha\n"))
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == (
        "sequence.yaml",
        12,
        "lessons[2]",
    )
    assert problem.message == "'alpha' is listed twice (first on line 10)"


def test_lessons_out_of_phase_order(folder: Path) -> None:
    edit(folder / "sequence.yaml", ("  - alpha\n  - beta\n", "  - beta\n  - alpha\n"))
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == (
        "sequence.yaml",
        11,
        "lessons",
    )
    assert problem.message == "'alpha' (phase 'first') is out of phase order"


@pytest.mark.parametrize("cadence", ["hourly", "every 0 days", "every 100 days", "7", "[daily]"])
def test_bad_cadence(folder: Path, cadence: str) -> None:
    edit(folder / "sequence.yaml", ("cadence: daily", f"cadence: {cadence}"))
    problem = only_problem(folder)
    assert (Path(problem.file).name, problem.line, problem.field) == ("sequence.yaml", 3, "cadence")
    assert "must be daily, weekly or 'every N days'" in problem.message


@pytest.mark.parametrize(
    ("cadence", "days"), [("daily", 1), ("weekly", 7), ("every 3 days", 3), ("every 1 day", 1)]
)
def test_good_cadence(folder: Path, cadence: str, days: int) -> None:
    edit(folder / "sequence.yaml", ("cadence: daily", f"cadence: {cadence}"))
    assert load_library(folder.parent)["demo"].cadence_days == days


SEQUENCE_ERRORS = [
    (
        "unknown-key",
        [("cadence: daily", "cadence: daily\nauthor: Sam")],
        4,
        "author",
        "unknown key",
    ),
    ("bad-id", [("id: demo", "id: Demo Sequence")], 1, "id", "lowercase words"),
    ("missing-title", [("title: Demo sequence\n", "")], 1, "title", "is required"),
    (
        "empty-phases",
        [
            (
                "phases:\n  - id: first\n    title: First phase\n"
                "  - id: second\n    title: Second phase\n",
                "phases: []\n",
            )
        ],
        4,
        "phases",
        "must be a non-empty list",
    ),
    (
        "bad-lesson-id",
        [("  - beta\n", "  - beta\n  - Bad_Id\n")],
        12,
        "lessons[2]",
        "must be a lesson id",
    ),
    (
        "lessons-not-a-list",
        [("lessons:\n  - alpha\n  - beta\n", "lessons: alpha\n")],
        9,
        "lessons",
        "must be a list",
    ),
]


@pytest.mark.parametrize(
    ("changes", "line", "field", "message"),
    [case[1:] for case in SEQUENCE_ERRORS],
    ids=[case[0] for case in SEQUENCE_ERRORS],
)
def test_sequence_file_errors(
    folder: Path, changes: list[tuple[str, str]], line: int, field: str, message: str
) -> None:
    edit(folder / "sequence.yaml", *changes)
    _, problems = check_library(folder.parent)
    assert ("sequence.yaml", line, field) in where(problems), "\n".join(map(str, problems))
    found = next(p for p in problems if (p.line, p.field) == (line, field))
    assert message in found.message


def test_no_sequence_found(tmp_path: Path) -> None:
    sequences, problems = check_library(tmp_path)
    assert sequences == {}
    assert [(p.line, p.field) for p in problems] == [(1, "")]
    assert "no sequence.yaml found" in problems[0].message


def test_check_library_collects_every_problem_in_one_run(folder: Path) -> None:
    edit(
        folder / "alpha.yaml",
        ("subject: Alpha subject", "subject: " + "x" * 200),
        (BODY_LINE_3, "[site](http://example.org/)"),
        ("reflection:", "author: Sam\nreflection:"),
    )
    _, problems = check_library(folder.parent)
    assert where(problems) == [
        ("alpha.yaml", 3, "subject"),
        ("alpha.yaml", 9, "body"),
        ("alpha.yaml", 10, "author"),
    ]
    # Problems in other files are reported in the same run.
    edit(folder / "beta.yaml", ("phase: second", "phase: nowhere"))
    edit(folder / "sequence.yaml", ("cadence: daily", "cadence: often"))
    _, problems = check_library(folder.parent)
    assert where(problems) == [
        ("alpha.yaml", 3, "subject"),
        ("alpha.yaml", 9, "body"),
        ("alpha.yaml", 10, "author"),
        ("beta.yaml", 4, "phase"),
        ("sequence.yaml", 3, "cadence"),
    ]
    with pytest.raises(LessonError) as info:
        load_library(folder.parent)
    assert info.value.problems == problems
    assert str(info.value).endswith("(and 4 more)")


# --- the command line ------------------------------------------------------------------------

PROBLEM_LINE = re.compile(r"^[^:]+:\d+: ")


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python run.py --config <shipped> ARGS` and capture its output."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DRG_") and key != "CREDENTIALS_DIRECTORY"
    }
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--config", str(REPO / "config.yaml"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of `path` containing `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, start=1) if text in line)


def shipped_counts() -> tuple[int, int]:
    """Sequences and lessons in the shipped lessons folder, read from each sequence.yaml."""
    listed = [
        yaml.safe_load(path.read_text(encoding="utf-8"))["lessons"]
        for path in sorted((REPO / "lessons").glob("*/sequence.yaml"))
    ]
    return len(listed), sum(len(lessons) for lessons in listed)


def test_cli_check_shipped_lessons_ok() -> None:
    sequences, lessons = shipped_counts()
    # no-contact (30) and low-contact (14) at least: a folder the checker skipped would show.
    assert sequences >= 2 and lessons >= 44, (sequences, lessons)
    result = run_cli("lessons", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"ok: {sequences} sequence(s), {lessons} lesson(s)"
    explicit = run_cli("lessons", "check", str(SHIPPED))
    assert explicit.returncode == 0, explicit.stdout


@pytest.mark.parametrize("breakage", ["remove-colon", "delete-listed-file"])
def test_cli_check_broken_copy(tmp_path: Path, breakage: str) -> None:
    copy = tmp_path / "library" / "no-contact"
    shutil.copytree(SHIPPED, copy)
    if breakage == "remove-colon":
        target = copy / "seven-attempts.yaml"
        line = line_of(target, "phase: going-no-contact")
        edit(target, ("phase: going-no-contact", "phase going-no-contact"))
        expected = f"{target}:{line}: YAML syntax error"
    else:
        (copy / "smear-campaigns.yaml").unlink()
        line = line_of(copy / "sequence.yaml", "- smear-campaigns")
        expected = (
            f"{copy / 'sequence.yaml'}:{line}: lessons: "
            "'smear-campaigns' is listed but smear-campaigns.yaml does not exist"
        )
    result = run_cli("lessons", "check", str(tmp_path / "library"))
    assert result.returncode == 1, result.stdout + result.stderr
    *problem_lines, summary = result.stdout.splitlines()
    assert problem_lines, result.stdout
    for printed in problem_lines:
        assert PROBLEM_LINE.match(printed), printed
    assert problem_lines[0].startswith(expected), problem_lines[0]
    assert summary == f"{len(problem_lines)} problem(s) found."
    assert "Traceback" not in result.stderr


def test_cli_list_prints_thirty_rows() -> None:
    result = run_cli("lessons", "list")
    assert result.returncode == 0, result.stderr
    title, header, *rows = result.stdout.splitlines()
    assert title == "Thirty Days of No Contact (no-contact): 30 lessons"
    assert header.split() == ["day", "id", "phase", "title", "words", "min"]
    assert len(rows) == 30
    sequence = load_library(REPO / "lessons")["no-contact"]
    row = re.compile(r"^\s*(\d+)  (\S+)\s+(\S+)\s+(.+?)\s+(\d+)\s+(\d+)$")
    for day, (printed, lesson) in enumerate(zip(rows, sequence.lessons, strict=True), start=1):
        match = row.match(printed)
        assert match, printed
        assert match.groups() == (
            str(day),
            lesson.id,
            lesson.phase,
            lesson.title,
            str(lesson.words),
            str(lesson.reading_minutes),
        )


def test_cli_preview_writes_self_contained_files(tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = run_cli("lessons", "preview", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    sequence = load_library(REPO / "lessons")["no-contact"]
    stem = f"day-03-{sequence.lessons[2].id}"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.eml", f"{stem}.html", f"{stem}.txt"]

    html = (out / f"{stem}.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert html.rstrip().endswith("</html>")
    assert "<title>" in html
    lowered = html.lower()
    for forbidden in (
        "src=",
        "<link",
        "<script",
        "<img",
        "<style",
        "@import",
        "@font-face",
        "url(",
    ):
        assert forbidden not in lowered, forbidden
    remote = re.findall(r"https?://[^\s\"'<>)]+", html)
    assert remote, "the preview should carry its links"
    for url in remote:
        assert not re.search(r"\.(png|jpe?g|gif|svg|webp|ico|woff2?|ttf|otf|eot|css)\b", url), url
        assert "fonts." not in url, url
    assert "Day 3 of 30" in html
    assert "Hi Sam," in html

    text = (out / f"{stem}.txt").read_text(encoding="utf-8")
    assert "Day 3 of 30" in text
    assert sequence.lessons[2].title in text

    raw = (out / f"{stem}.eml").read_bytes()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert message["Subject"] == sequence.lessons[2].subject
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
