"""What `lessons serve` shows: the lessons checked and composed, rebuilt whenever a file changes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError
from watchfiles import awatch

from cli.lessons import problem_report, sample_message
from delivery.compose import Composer
from delivery.lessoncheck import render_problems
from delivery.message import MessageFactory, Recipient
from guide.clock import Clock
from guide.config import Config
from guide.errors import Problem
from guide.lessonfile import display
from guide.lessons import Lesson, Sequence, check_library
from wiring.reload import check_templates

log = logging.getLogger(__name__)

# The sample reader, as `lessons preview` has it.
SAMPLE_TO, SAMPLE_NAME = "reader@example.org", "Sam"


@dataclass(frozen=True)
class Email:
    """One day as its reader gets it: what the inbox shows, the HTML part and the text part."""

    sender: str
    to: str
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Snapshot:
    """The lessons as they were at one moment: sequences to show, or the checker's report.

    With problems, `sequences` are the last good ones (so the list stays) and no email is shown.
    """

    version: str
    sequences: dict[str, Sequence]
    report: tuple[str, ...]
    composer: Composer | None

    @property
    def broken(self) -> bool:
        """Whether the files as saved would be refused by `lessons check` (and the service)."""
        return bool(self.report)

    def find(self, sequence_id: str, day: int) -> tuple[Sequence, Lesson] | None:
        """The sequence and its lesson on `day`, if both exist."""
        sequence = self.sequences.get(sequence_id)
        if sequence is None or not 1 <= day <= len(sequence):
            return None
        return sequence, sequence.lesson_on_day(day)

    def email(self, sequence: Sequence, day: int, *, discreet: bool, clock: Clock) -> Email:
        """Day `day` composed for the sample reader, plain or discreet (only when not broken)."""
        assert self.composer is not None, "a broken snapshot has no email"
        recipient = Recipient(SAMPLE_TO, SAMPLE_NAME, discreet)
        sample = sample_message(self.composer, sequence, day, recipient, clock())
        headers = BytesParser(policy=policy.default).parsebytes(sample.data, headersonly=True)
        sender, to, subject = (str(headers[name]) for name in ("From", "To", "Subject"))
        return Email(sender, to, subject, sample.html, sample.text)


def template_problem(err: TemplateError, folder: Path) -> Problem:
    """A template that does not compile, as a checker's problem naming its file and line."""
    if isinstance(err, TemplateSyntaxError):
        where = display(Path(err.filename)) if err.filename else (err.name or display(folder))
        return Problem(where, err.lineno, "", err.message or "syntax error")
    return Problem(display(folder), 1, "", str(err))


@dataclass
class Preview:
    """The current snapshot of a lessons folder and its templates, and who waits for the next.

    `base` supplies the link signer and DKIM key, read once; each rebuild takes a fresh message
    factory, so an edited template is read again like an edited lesson.
    """

    config: Config
    lessons: Path
    templates: Path
    base: Composer
    clock: Clock
    current: Snapshot = field(init=False)
    closed: bool = field(init=False, default=False)
    _token: str = field(init=False, default_factory=lambda: secrets.token_hex(4))
    _counter: itertools.count[int] = field(init=False, default_factory=itertools.count)
    _changed: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.current = self.rebuild(None)

    def rebuild(self, last: Snapshot | None) -> Snapshot:
        """Read, check and compose everything `lessons check` does, plus the email templates."""
        # The token changes per process: a page open across a restart reloads too.
        version = f"{self._token}-{next(self._counter)}"
        factory = MessageFactory(self.config, self.templates)
        composer = Composer(self.config, factory, self.base.signer, self.base.dkim)
        sequences: dict[str, Sequence] = {}
        try:
            check_templates(composer.factory.env)
        except TemplateError as err:
            problems = [template_problem(err, self.templates / "email")]
        else:
            sequences, problems = check_library(self.lessons)
            if not problems:
                problems = render_problems(composer, sequences, self.clock())
        if problems:
            kept = last.sequences if last is not None else {}
            return Snapshot(version, kept, tuple(problem_report(problems)), None)
        return Snapshot(version, sequences, (), composer)

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` current and wake every open page's event stream."""
        self.current = snapshot
        self._changed.set()
        self._changed = asyncio.Event()

    def upcoming(self) -> asyncio.Event:
        """Set at the next publish or close: take it before reading `current`, so none is missed."""
        return self._changed

    def close(self) -> None:
        """Let every waiting event stream end, so the server can stop."""
        self.closed = True
        self._changed.set()

    async def watch(self, stop: asyncio.Event, report: Callable[[str], None]) -> None:
        """Rebuild after every batch of saved changes, until `stop` is set."""
        folders = [self.lessons, self.templates / "email"]
        # step: 50 ms without a further change ends a batch (an editor writes a file in
        # several steps), so a save is shown well within a second.
        async for changes in awatch(*folders, stop_event=stop, step=50, debounce=400):
            # An editor's temporary files are changes too, but not worth naming.
            names = sorted({display(Path(path)) for _, path in changes if _named(path)})
            try:
                snapshot = await asyncio.to_thread(self.rebuild, self.current)
            except Exception:  # a bug, not a bad edit: say so, and keep watching
                log.exception("could not rebuild the preview after a change")
                continue
            self.publish(snapshot)
            outcome = snapshot.report[-1] if snapshot.broken else "ok"
            report(f"changed: {', '.join(names) or 'the folder'}: {outcome}")


def _named(path: str) -> bool:
    return Path(path).suffix in {".yaml", ".yml", ".html", ".txt"}
