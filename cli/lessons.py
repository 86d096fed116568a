"""`lessons check|list|preview` and `send-test`: what admins run before lessons go live."""

from __future__ import annotations

import asyncio
import sys
import webbrowser
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click

from cli.context import pass_config
from cli.output import aligned_table, console, show_table
from delivery.compose import Composer
from delivery.lessoncheck import render_problems as lesson_render_problems
from delivery.message import Recipient
from delivery.transports import Envelope
from guide.config import Config
from guide.errors import GuideError, Problem
from guide.lessons import Lesson, Sequence, check_library
from guide.text import ValidationError, check_email, check_name
from guide.tokens import LinkSigner
from wiring import make_composer, make_transport

SEQUENCE_HELP = "sequence id (default: lessons.default_sequence)"


@dataclass(frozen=True)
class SampleMessage:
    """One rendered lesson for a sample subscriber."""

    lesson: Lesson
    day: int
    data: bytes
    html: str
    text: str


# -- the commands ------------------------------------------------------------------------------


@click.group("lessons")
def lessons_group() -> None:
    """Check, list and preview lessons."""


@lessons_group.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@pass_config
def check_command(config: Config, path: Path | None) -> int:
    """Validate every lesson file (PATH: lessons folder, default lessons.dir)."""
    return lessons_check(path or config.lessons_dir, sys.stdout, config)


@lessons_group.command("list")
@click.option("--sequence", help=SEQUENCE_HELP)
@pass_config
def list_command(config: Config, sequence: str | None) -> int:
    """Print the sequence as a table."""
    chosen = pick_sequence(config.lessons_dir, sequence or config.default_sequence, sys.stderr)
    return 1 if chosen is None else lessons_list(chosen, sys.stdout)


@lessons_group.command("preview")
@click.argument("day", type=int)
@click.option("--sequence", help=SEQUENCE_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("preview"),
    help="folder (default: preview)",
)
@click.option("--discreet", is_flag=True, help="render the discreet variant")
@click.option("--open", "open_browser", is_flag=True, help="open the HTML in a browser")
@pass_config
def preview_command(
    config: Config, day: int, sequence: str | None, out: Path, discreet: bool, open_browser: bool
) -> int:
    """Write the HTML, text and .eml of one day."""
    chosen = pick_sequence(config.lessons_dir, sequence or config.default_sequence, sys.stderr)
    if chosen is None:
        return 1
    return lessons_preview(
        config, chosen, day, out, discreet=discreet, open_browser=open_browser, out=sys.stdout
    )


@lessons_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", default=8090, show_default=True, type=click.IntRange(0, 65535), help="0: any free one"
)
@click.option("--sequence", help="show only this sequence (default: all)")
@pass_config
def serve_command(config: Config, host: str, port: int, sequence: str | None) -> int:
    """Preview every day in a browser; a saved edit shows within a second."""
    # Imported here: the preview server imports this module for its check and samples.
    from cli.lesson_server import run_preview

    return run_preview(config, host, port, sequence, sys.stdout, sys.stderr)


@click.command("send-test")
@click.argument("day", type=int)
@click.option("--to", required=True, help="recipient address")
@click.option("--name", default="", help="first name for the greeting")
@click.option("--sequence", help=SEQUENCE_HELP)
@click.option("--discreet", is_flag=True, help="neutral sender name and subject")
@pass_config
def send_test_command(
    config: Config, day: int, to: str, name: str, sequence: str | None, discreet: bool
) -> int:
    """Send one lesson to an address."""
    chosen = pick_sequence(config.lessons_dir, sequence or config.default_sequence, sys.stderr)
    if chosen is None:
        return 1
    return send_test(config, chosen, day, to, name=name, discreet=discreet, out=sys.stdout)


# -- what they do ------------------------------------------------------------------------------


def lessons_check(root: Path, out: TextIO, config: Config | None = None) -> int:
    """Print every problem as file:line: field: message; 0 when there are none.

    With `config`, every lesson the files accept is also rendered as each kind of subscriber
    receives it, so what this check passes is what the service can send.
    """
    sequences, problems = check_library(root)
    if config is not None and not problems:
        problems = render_problems(config, sequences)
    for line in problem_report(problems):
        print(line, file=out)
    if problems:
        return 1
    total = sum(len(s) for s in sequences.values())
    print(f"ok: {len(sequences)} sequence(s), {total} lesson(s)", file=out)
    return 0


def problem_report(problems: list[Problem]) -> list[str]:
    """What `lessons check` prints for `problems`: one line each, then how many; [] for none."""
    if not problems:
        return []
    return [*(str(problem) for problem in problems), f"{len(problems)} problem(s) found."]


def pick_sequence(root: Path, sequence_id: str, err: TextIO) -> Sequence | None:
    """Load the library and return one sequence, printing problems if it cannot."""
    sequences, problems = check_library(root)
    if problems:
        for problem in problems:
            print(problem, file=err)
        print("Fix the lessons first (python run.py lessons check).", file=err)
        return None
    if sequence_id not in sequences:
        known = ", ".join(sorted(sequences)) or "none"
        print(f"no sequence {sequence_id!r} (known: {known})", file=err)
        return None
    return sequences[sequence_id]


def lessons_list(sequence: Sequence, out: TextIO) -> int:
    """Print the sequence as a table: day, id, phase, title, words, reading minutes."""
    columns = ("day", "id", "phase", "title", "words", "min")
    table = aligned_table(columns, right=("day", "words", "min"), wrap=("title",))
    for day, lesson in enumerate(sequence.lessons, start=1):
        table.add_row(
            str(day),
            lesson.id,
            lesson.phase,
            lesson.title,
            str(lesson.words),
            str(lesson.reading_minutes),
        )
    screen = console(out)
    screen.print(f"{sequence.title} ({sequence.id}): {len(sequence)} lessons")
    show_table(screen, table)
    return 0


# -- sample messages (composition goes through the composer) -----------------------------------


def render_problems(config: Config, sequences: dict[str, Sequence]) -> list[Problem]:
    """Each lesson composed, plain and discreet, for the longest name: what fails or is too big."""
    # Check-only links: signed with a throwaway key, they must never work against a live site.
    signer = LinkSigner("check-only", config.web.public_url, config.link_lifetime)
    return lesson_render_problems(make_composer(config, signer), sequences, datetime.now(UTC))


def sample_message(
    composer: Composer, sequence: Sequence, day: int, recipient: Recipient, now: datetime
) -> SampleMessage:
    """Day `day` of `sequence` composed by `composer` for `recipient`, links leading nowhere."""
    lesson = sequence.lesson_on_day(day)
    composed, readable = composer.sample(recipient, sequence, lesson, now)
    return SampleMessage(lesson, day, composed.data, readable.html, readable.text)


def render_sample(
    config: Config,
    sequence: Sequence,
    day: int,
    signer: LinkSigner | None = None,
    *,
    to: str = "reader@example.org",
    name: str = "Sam",
    discreet: bool = False,
    now: datetime | None = None,
) -> SampleMessage:
    """Render day `day` as subscriber `name` <`to`> would receive it, through the composer."""
    composer = make_composer(config, signer)
    return sample_message(
        composer, sequence, day, Recipient(to, name, discreet), now or datetime.now(UTC)
    )


def lessons_preview(
    config: Config,
    sequence: Sequence,
    day: int,
    out_dir: Path,
    *,
    discreet: bool,
    open_browser: bool,
    out: TextIO,
) -> int:
    """Write the HTML, text and .eml of one lesson for a sample subscriber."""
    if not 1 <= day <= len(sequence):
        print(f"day must be from 1 to {len(sequence)}", file=sys.stderr)
        return 2
    # Preview links are signed with a throwaway key: they must never work against a live site.
    signer = LinkSigner("preview-only", config.web.public_url, config.link_lifetime)
    sample = render_sample(config, sequence, day, signer, discreet=discreet)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"day-{day:02d}-{sample.lesson.id}{'-discreet' if discreet else ''}"
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(sample.html, encoding="utf-8")
    (out_dir / f"{stem}.txt").write_text(sample.text, encoding="utf-8")
    (out_dir / f"{stem}.eml").write_bytes(sample.data)
    print(f"wrote {html_path}, {stem}.txt and {stem}.eml", file=out)
    if open_browser:
        webbrowser.open(html_path.resolve().as_uri())
    return 0


def send_test(
    config: Config, sequence: Sequence, day: int, to: str, *, name: str, discreet: bool, out: TextIO
) -> int:
    """Render one lesson and send it through the configured transport."""
    if not 1 <= day <= len(sequence):
        print(f"day must be from 1 to {len(sequence)}", file=sys.stderr)
        return 2
    # The one validator every address passes, from any source: one address, never a list.
    try:
        to, name = check_email(to), check_name(name)
    except ValidationError as err:
        option = "--to" if err.field == "email" else "--name"
        print(f"error: {option}: {err.message}", file=sys.stderr)
        return 2
    sample = render_sample(config, sequence, day, to=to, name=name, discreet=discreet)
    envelope = Envelope(config.sender.address, to, sample.data)

    async def deliver() -> str:
        transport = make_transport(config)
        try:
            connection = await transport.connect()
            try:
                return str(await connection.send(envelope))
            finally:
                await connection.close()
        finally:
            await transport.close()

    try:
        result = asyncio.run(deliver())
    except GuideError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"day {day} ({sample.lesson.id}) to {to} via {config.transport}: {result}", file=out)
    return 0 if result.startswith("delivered") else 1
