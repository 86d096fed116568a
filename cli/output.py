"""Output helpers: rich tables and progress on a terminal, plain unwrapped text when piped."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TextIO

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

# Piped output is for scripts and files: never cut a line to fit a screen that is not there.
UNLIMITED_WIDTH = 1_000_000


class _Console(Console):
    """A rich console that leaves a closed pipe to the entry point (exit 141, not 1)."""

    def on_broken_pipe(self) -> None:
        """Stop writing and let the command line's handler decide the exit status."""
        # Rich would exit 1 here; `run.py lessons list | head` is not a failure.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


def console(stream: TextIO | None = None) -> Console:
    """A console on `stream` (stdout): colour only on a terminal, and data is never markup."""
    stream = stream or sys.stdout
    terminal = stream.isatty()
    return _Console(
        file=stream,
        # Decide from the stream itself, not FORCE_COLOR or COLUMNS: piped text stays plain.
        force_terminal=terminal,
        no_color=not terminal,
        color_system="auto" if terminal else None,
        width=None if terminal else UNLIMITED_WIDTH,
        soft_wrap=not terminal,
        # Names and titles come from people and lesson files: "[b]" or ":x:" stay literal.
        markup=False,
        emoji=False,
        highlight=False,
    )


def aligned_table(
    columns: Sequence[str], *, right: Sequence[str] = (), wrap: Sequence[str] = ()
) -> Table:
    """A borderless table, two spaces between columns; only `wrap` columns break lines."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for name in columns:
        table.add_column(
            name, justify="right" if name in right else "left", no_wrap=name not in wrap
        )
    return table


def show_table(out: Console, table: Table) -> None:
    """Print `table`; on a narrow terminal let lines run long rather than cut ids or dates."""
    needed = Measurement.get(out, out.options.update_width(UNLIMITED_WIDTH), table).minimum
    # Rich shrinks a table to the console's width, truncating cells: widen this console instead
    # and let the terminal fold the long lines.
    out.width = max(out.width, needed)
    out.print(table)


def print_rows(
    out: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
) -> None:
    """A table on a terminal; tab-separated lines with a header when piped (for cut and awk)."""
    if out.is_terminal:
        table = aligned_table(columns, right=right)
        for row in rows:
            table.add_row(*row)
        show_table(out, table)
        return
    # Straight to the stream: rich would expand the tabs into spaces.
    for row in (columns, *rows):
        print("\t".join(row), file=out.file)


class Step(Protocol):
    """Advance a progress display by one item."""

    def __call__(self) -> None:
        """One more item done."""


@contextmanager
def progress(total: int, label: str, stream: TextIO | None = None) -> Iterator[Step]:
    """A rich progress bar on a terminal (stderr); a line at each quarter otherwise."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield _quarter_lines(total, stream)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, MofNCompleteColumn(), console=console(stream)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _quarter_lines(total: int, stream: TextIO) -> Step:
    # A log or a cron mail keeps a few lines at 25 % steps, in the form scripts already grep.
    done = 0
    shown = -1
    total = max(total, 1)

    def step() -> None:
        nonlocal done, shown
        done += 1
        percent = done * 100 // total
        if percent != shown and percent % 25 == 0:
            shown = percent
            bar = "#" * (percent // 5) + "-" * (20 - percent // 5)
            print(f"[{bar}] {percent:3d}% {done}/{total}", file=stream, flush=True)

    return step


@contextmanager
def live_count(total: int, label: str, stream: TextIO) -> Iterator[Callable[[int], None]]:
    """A progress bar of `done` out of `total` on a terminal; nothing at all when piped."""
    # Piped (cron, a log), the command's one summary line is the whole output.
    if not stream.isatty():
        yield lambda done: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console(stream)) as bar:
        task = bar.add_task(label, total=max(total, 1))
        yield lambda done: bar.update(task, completed=min(done, total))
