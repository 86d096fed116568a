"""The live lesson library: reloaded when files change, keeping the last good version on error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from guide.errors import LessonError, Problem
from guide.lessons import Sequence, load_library

log = logging.getLogger(__name__)

# A further check of loaded sequences (delivery.lessoncheck renders every lesson as an email).
Verify = Callable[[dict[str, Sequence]], list[Problem]]


class LessonLibrary:
    """Hands out the current sequences; a broken edit is refused and logged, never sent."""

    def __init__(self, root: Path, verify: Verify | None = None) -> None:
        self.root = root
        self.verify = verify
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._sequences: dict[str, Sequence] = {}
        self.error: LessonError | None = None

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        # A stat per file per tick is cheap and notices edits, renames and deletions alike.
        entries = []
        for path in sorted(self.root.rglob("*.yaml")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entries.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(entries)

    def load(self) -> dict[str, Sequence]:
        """Load for the first time; LessonError if the lessons are broken at start."""
        self._stamp = self._fingerprint()
        self._sequences = self._load()
        self.error = None
        return self._sequences

    def verify_with(self, verify: Verify) -> None:
        """Check the loaded sequences with `verify`, and every reload from now on too."""
        self.verify = verify
        problems = verify(self._sequences)
        if problems:
            raise LessonError(problems)

    def _load(self) -> dict[str, Sequence]:
        """The files' sequences once they pass every check, `verify` too; else LessonError."""
        sequences = load_library(self.root)
        problems = self.verify(sequences) if self.verify is not None else []
        if problems:
            raise LessonError(problems)
        return sequences

    def current(self) -> dict[str, Sequence]:
        """The sequences as they are now, or the last good ones if the files are broken."""
        stamp = self._fingerprint()
        if stamp == self._stamp:
            return self._sequences
        self._stamp = stamp
        try:
            self._sequences = self._load()
        except LessonError as err:
            self.error = err
            log.error(
                "lesson files changed but are invalid; still sending the last good version: %s",
                "; ".join(str(p) for p in err.problems[:5]),
            )
        else:
            if self.error is not None or self._sequences:
                log.info("lessons reloaded: %s", ", ".join(sorted(self._sequences)))
            self.error = None
        return self._sequences
