"""Hostile and careless lessons (issue 12): each refused by `lessons check` with one clear line.

Whatever `lessons check` accepts must render, and whatever cannot render must fail the check.
The command runs as a subprocess, as an admin runs it; the state folder stays byte-for-byte.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.lessons import render_problems
from delivery.lessoncheck import render_problems as lesson_render_problems
from delivery.message import Recipient
from guide.config import Config, load_config
from guide.lessonfile import FILE_MAX
from guide.lessons import check_library
from guide.library import LessonLibrary
from guide.render import (
    ALLOWED_SYNTAX,
    BODY_FILTERS,
    BODY_HTML_MAX,
    BODY_MAX,
    BODY_RENDERED_MAX,
    HTML_PART_MAX,
    MESSAGE_MAX,
    check_body,
    markdown_to_html,
)
from guide.tokens import LinkSigner
from tests.statecheck import unchanged
from wiring import make_composer

ROOT = Path(__file__).resolve().parent.parent
KEY = secrets.token_urlsafe(32)  # the property test's links lead nowhere
RELATIVE = "lessons/demo"  # problems name files relative to the working folder, tmp_path
AVAILABLE = "day, lesson_title, sequence_title, total_days"
REFUSED = f"not allowed in a lesson body (allowed: {ALLOWED_SYNTAX})"
FILTERS = ", ".join(sorted(BODY_FILTERS))

SEQUENCE = """\
id: demo
title: Demo sequence
cadence: daily
phases:
  - id: first
    title: First phase
lessons:
  - alpha
"""


def lesson(lesson_id: str, body: str = "A plain lesson.", **fields: str) -> str:
    """A lesson file whose `body: |` is line 5, so body line 1 is file line 6."""
    values = {"title": "A title", "subject": "A subject", "reflection": "What now?", **fields}
    lines = [f"id: {lesson_id}", f"title: {json.dumps(values.pop('title'))}", "phase: first"]
    lines += [f"subject: {json.dumps(values.pop('subject'))}", "body: |"]
    lines += [f"  {line}" for line in body.split("\n")]
    lines += [f"{key}: {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_library(tmp_path: Path, lessons: dict[str, str]) -> Path:
    """tmp_path/lessons/demo with sequence.yaml listing `lessons` (id → file text)."""
    folder = tmp_path / "lessons" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    listed = "".join(f"  - {lesson_id}\n" for lesson_id in lessons)
    (folder / "sequence.yaml").write_text(SEQUENCE.replace("  - alpha\n", listed), "utf-8")
    for lesson_id, text in lessons.items():
        (folder / f"{lesson_id}.yaml").write_text(text, encoding="utf-8")
    return folder


def write_config(tmp_path: Path) -> Path:
    """A config whose state and lessons live in tmp_path."""
    path = tmp_path / "config.yaml"
    data = {"state_dir": str(tmp_path / "state"), "lessons": {"dir": str(tmp_path / "lessons")}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    (tmp_path / "state" / "outbox" / "new").mkdir(parents=True, exist_ok=True)
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """run.py in a child process, without the caller's DRG_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRG_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), *args],
        cwd=config.parent,
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- bad lesson bodies and fields, one line each -----------------------------------------------

BIG_STRING = "{{ 'x' * 10**8 }}"
QUOTES = '"' * 16_000 + "\n"  # markdown-it writes each as &quot;: 96 KB of HTML
# (lesson id, file text, the line and message `lessons check` must print for it)
BAD_LESSONS: list[tuple[str, str, str]] = [
    ("huge-string", lesson("huge-string", BIG_STRING), f"6: body: the * operator is {REFUSED}"),
    ("power", lesson("power", "{{ day ** 99 }}"), f"6: body: the ** operator is {REFUSED}"),
    ("percent", lesson("percent", "{{ '%s' % day }}"), f"6: body: the % operator is {REFUSED}"),
    (
        "range-global",
        lesson("range-global", "Line one.\n{{ range }}"),
        f"7: body: undefined template variable 'range' (available: {AVAILABLE})",
    ),
    (
        "range-call",
        lesson("range-call", "{{ range(10) }}"),
        f"6: body: calling a function or method is {REFUSED}",
    ),
    (
        "lipsum",
        lesson("lipsum", "{{ lipsum(n=1000) }}"),
        f"6: body: calling a function or method is {REFUSED}",
    ),
    (
        "for-loop",
        lesson("for-loop", "{% for c in lesson_title %}{{ c }}{% endfor %}"),
        f"6: body: {{% for %}} loops are {REFUSED}",
    ),
    ("set", lesson("set", "{% set x = 1 %}x"), f"6: body: {{% set %}} is {REFUSED}"),
    (
        "include",
        lesson("include", "{% include 'config.yaml' %}"),
        f"6: body: {{% include %}} is {REFUSED}",
    ),
    (
        "item",
        lesson("item", "{{ lesson_title[0] }}"),
        f"6: body: item access is unsafe and {REFUSED}",
    ),
    (
        "center",
        lesson("center", "{{ lesson_title | center(100000000) }}"),
        f"6: body: template syntax error: No filter named 'center' (allowed: {FILTERS})",
    ),
    (
        "filter-arguments",
        lesson("filter-arguments", "{{ lesson_title | trim('x') }}"),
        "6: body: arguments to 'trim' are not allowed in a lesson body",
    ),
    (
        "digits",
        lesson("digits", "{{ " + "9" * 5000 + " }}"),
        "6: body: template syntax error: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the "
        "limit",
    ),
    (
        "unknown-mark",
        lesson("unknown-mark", "Open [[drg:evil]] now."),
        "5: body: [[drg:…]] is reserved for the email's own links",
    ),
    (
        "known-mark",
        lesson("known-mark", "[[drg:unsubscribe_url]]"),
        "5: body: [[drg:…]] is reserved for the email's own links",
    ),
    (
        "escaped-mark",
        lesson("escaped-mark", "Open [[drg\\:evil]] now."),
        "6: body: renders to [[drg:…]], which is reserved for the email's own links",
    ),
    (
        "built-mark",
        lesson("built-mark", "{{ '[[drg' ~ ':evil]]' }}"),
        "6: body: renders to [[drg:…]], which is reserved for the email's own links",
    ),
    (
        "title-mark",
        lesson("title-mark", title="Hello [[drg:manage_url]]"),
        "2: title: [[drg:…]] is reserved for the email's own links",
    ),
    (
        "reflection-mark",
        lesson("reflection-mark", reflection="[[drg:greeting]]"),
        "7: reflection: [[drg:…]] is reserved for the email's own links",
    ),
    (
        "long-body",
        lesson("long-body", "x" * BODY_MAX),  # and its line feed
        f"6: body: is {BODY_MAX + 1:,} characters; the limit is {BODY_MAX:,}",
    ),
    (
        "long-render",
        lesson("long-render", "{{ lesson_title" + " ~ lesson_title" * 300 + " }}"),
        f"6: body: renders to {301 * 150 + 1:,} characters; the limit is {BODY_RENDERED_MAX:,}",
    ),
    (
        "long-html",
        lesson("long-html", QUOTES.rstrip()),
        f"6: body: renders to {len(markdown_to_html(QUOTES).encode()):,} bytes of HTML; the "
        f"limit is "
        f"{BODY_HTML_MAX:,}",
    ),
    (
        "long-title",
        lesson("long-title", title="t" * 151),
        "2: title: is 151 characters; the limit is 150",
    ),
    (
        "long-reflection",
        lesson("long-reflection", reflection="r" * 2001),
        "7: reflection: is 2,001 characters; the limit is 2,000",
    ),
    (
        "long-note",
        lesson("long-note", content_note="n" * 501),
        "8: content_note: is 501 characters; the limit is 500",
    ),
]


def test_every_bad_lesson_is_one_clear_line_and_nothing_changes(tmp_path: Path) -> None:
    write_library(tmp_path, {lesson_id: text for lesson_id, text, _ in BAD_LESSONS})
    config = write_config(tmp_path)
    with unchanged(tmp_path / "state", tmp_path / "lessons"):
        done = run(config, "lessons", "check")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    printed = done.stdout.splitlines()
    expected = [f"{RELATIVE}/{lesson_id}.yaml:{where}" for lesson_id, _, where in BAD_LESSONS]
    assert sorted(printed[:-1]) == sorted(expected)
    assert printed[-1] == f"{len(BAD_LESSONS)} problem(s) found."


def test_links_out_of_the_folder_devices_and_huge_files_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(lesson("outside"), encoding="utf-8")
    ids = ("outside", "dangling", "fifo", "huge", "inside")
    folder = write_library(tmp_path, {lesson_id: lesson(lesson_id) for lesson_id in ids})
    for name in ("outside", "dangling", "fifo", "huge", "inside"):
        (folder / f"{name}.yaml").unlink()
    (folder / "outside.yaml").symlink_to(secret)
    (folder / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")
    os.mkfifo(folder / "fifo.yaml")  # reading it would wait forever
    (folder / "huge.yaml").write_bytes(b"#" * (FILE_MAX + 1))
    (tmp_path / "lessons" / "inside.yaml").write_text(lesson("inside"), encoding="utf-8")
    (folder / "inside.yaml").symlink_to(tmp_path / "lessons" / "inside.yaml")  # allowed
    config = write_config(tmp_path)
    with unchanged(tmp_path / "state"):
        done = run(config, "lessons", "check", str(tmp_path / "lessons"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lessons = (tmp_path / "lessons").resolve()
    assert sorted(done.stdout.splitlines()) == sorted(
        [
            f"{RELATIVE}/dangling.yaml:1: is a symbolic link to nothing (or a loop of links)",
            f"{RELATIVE}/fifo.yaml:1: is not a regular file",
            f"{RELATIVE}/huge.yaml:1: is {FILE_MAX + 1:,} bytes; a lesson file may be at most "
            f"{FILE_MAX:,}",
            f"{RELATIVE}/outside.yaml:1: is a symbolic link to {secret.resolve()}, outside the "
            f"lessons folder {lessons}",
            "4 problem(s) found.",
        ]
    )


def test_a_mark_in_the_sequence_title_fails_the_check(tmp_path: Path) -> None:
    folder = write_library(tmp_path, {"alpha": lesson("alpha")})
    sequence = folder / "sequence.yaml"
    sequence.write_text(sequence.read_text().replace("Demo sequence", '"[[drg:x]]"'), "utf-8")
    config = write_config(tmp_path)
    with unchanged(tmp_path / "state"):
        done = run(config, "lessons", "check")
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [
        f"{RELATIVE}/sequence.yaml:2: title: [[drg:…]] is reserved for the email's own links",
        "1 problem(s) found.",
    ]


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        (["tick", "--now", "2027-03-01T08:00Z"], "The lessons are invalid; fix them first"),
        (["lessons", "preview", "1"], "Fix the lessons first"),
    ],
    ids=["tick", "preview"],
)
def test_a_broken_lesson_stops_tick_and_preview_with_one_line(
    tmp_path: Path, command: list[str], hint: str
) -> None:
    # Before, both died per subscriber with a KeyError on the unknown mark, and tick said 0.
    write_library(tmp_path, {"alpha": lesson("alpha", "Open [[drg:evil]] now.")})
    config = write_config(tmp_path)
    with unchanged(tmp_path / "state"), unchanged(tmp_path / "preview"):
        done = run(config, *command)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f"{RELATIVE}/alpha.yaml:5: body: [[drg:…]] is reserved for the email's own links",
        f"{hint} (python run.py lessons check).",
    ]


def test_a_huge_string_is_refused_without_being_built() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = check_body(f"Hello.\n\n{BIG_STRING}\n\n{{{{ 9 ** 9 ** 9 ** 9 }}}}\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == [(2, f"the * operator is {REFUSED}")]
    assert peak < 5_000_000  # 10**8 characters would be 100 MB
    assert time.perf_counter() - started < 5


# -- the property: the check and the renderer agree --------------------------------------------

FRAGMENTS = [
    "Plain words.",
    "{{ day }}",
    "{{ total_days - day }}",
    "{{ lesson_title | upper }}",
    "{{ sequence_title ~ '!' }}",
    "{% if day > 1 %}again{% else %}first{% endif %}",
    "{{ day / 0 }}",
    "{{ day // 2 }}",
    "{{ lesson_title + day }}",
    "{{ -lesson_title }}",
    "{{ day is even }}",
    "{{ name }}",
    "{{ range(3) }}",
    "{{ 'ab' * 3 }}",
    "{{ day.real }}",
    "{% for x in 'ab' %}x{% endfor %}",
    "{{ day | center(9) }}",
    "{{ day | trim }}",
    "{{ ",
    "[[drg:",
    "[[drg:manage_url]]",
    "drg:x]]",
    "[[",
    "\\:",
    "&#58;",
    "**bold**",
    "[a link](https://example.org/)",
    "<b>raw</b>",
    "## A heading",
    "- a list item",
    "> a quote",
    "\n",
    "\n\n",
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The default configuration, its state in a temporary folder."""
    folder = tmp_path_factory.mktemp("property")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(folder / "state")}), encoding="utf-8")
    return load_config(path, env={})


@given(pieces=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8))
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_what_the_check_accepts_renders_and_what_cannot_render_fails_it(
    tmp_path_factory: pytest.TempPathFactory, config: Config, pieces: list[str]
) -> None:
    body = " ".join(pieces)
    folder = write_library(tmp_path_factory.mktemp("lessons"), {"alpha": lesson("alpha", body)})
    sequences, problems = check_library(folder.parent)
    accepted = not problems and not render_problems(config, sequences)
    composer = make_composer(config, LinkSigner(KEY, config.web.public_url, config.link_lifetime))
    try:
        sequence = sequences["demo"] if sequences else None
        assert sequence is not None  # a lesson the files refuse does not render either
        for discreet in (False, True):
            recipient = Recipient("reader@example.org", "Sam", discreet)
            composed, readable = composer.sample(
                recipient, sequence, sequence.lessons[0], datetime.now(UTC)
            )
            assert len(readable.html.encode()) <= HTML_PART_MAX
            assert len(composed.data) <= MESSAGE_MAX
        rendered = True
    except Exception:  # any failure to render is what the check must catch
        rendered = False
    # "Accepted implies it renders" is the same rule as "cannot render implies refused".
    assert rendered or not accepted, (body, problems)


@pytest.mark.parametrize(
    "body", ["{{ day }} of {{ total_days - day }}", "{{ lesson_title | upper }}"]
)
def test_the_check_accepts_what_renders(tmp_path: Path, config: Config, body: str) -> None:
    # The rule above would also hold for a check that refused everything.
    folder = write_library(tmp_path, {"alpha": lesson("alpha", body)})
    sequences, problems = check_library(folder.parent)
    assert problems == [] and render_problems(config, sequences) == []


def test_the_html_limit_counts_the_whole_email_not_only_the_body(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every field at its longest, of the character HTML escapes the most: the email's HTML is
    # 97-99 KB, under the limit, because the body's own limit leaves room for the layout.
    quotes = '"' * (BODY_HTML_MAX // 6 - 10)
    text = lesson(
        "alpha",
        quotes,
        title='"' * 150,
        subject='"' * 150,
        reflection='"' * 2000,
        content_note='"' * 500,
    )
    folder = write_library(tmp_path, {"alpha": text})
    sequences, problems = check_library(folder.parent)
    assert problems == []
    assert render_problems(config, sequences) == []
    # A longer layout or footer would not be noticed by the body's limit; the whole-email one
    # sees it (here the limit moves instead of the layout growing).
    monkeypatch.setattr("delivery.lessoncheck.HTML_PART_MAX", 90_000)
    found = render_problems(config, sequences)
    assert [(Path(p.file).name, p.line, p.field) for p in found] == [("alpha.yaml", 6, "body")]
    assert re.fullmatch(
        r"the email's HTML is 9[78],\d{3} bytes; the limit is 90,000 \(Gmail clips HTML over "
        r"102 KB, hiding the stop link\): shorten the body",
        found[0].message,
    ), found[0].message


def test_a_library_given_the_render_check_keeps_sending_what_it_can_send(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's own reload refuses what `lessons check` refuses, when wired with it.
    folder = write_library(tmp_path, {"alpha": lesson("alpha")})
    composer = make_composer(config, LinkSigner(KEY, config.web.public_url, config.link_lifetime))
    library = LessonLibrary(
        folder.parent,
        verify=lambda found: lesson_render_problems(composer, found, datetime.now(UTC)),
    )
    good = library.load()
    monkeypatch.setattr("delivery.lessoncheck.HTML_PART_MAX", 1_000)
    (folder / "alpha.yaml").write_text(lesson("alpha", "A longer lesson."), encoding="utf-8")
    assert library.current() is good
    assert library.error is not None
    assert [str(p).split(": ", 2)[1] for p in library.error.problems] == ["body"]
    assert library.error.problems[0].message.startswith("the email's HTML is ")
