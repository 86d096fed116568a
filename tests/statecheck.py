"""Snapshots of state folders, to assert a bad input changed nothing on disk, byte for byte."""

from __future__ import annotations

import difflib
import hashlib
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Snapshot", "snapshot", "unchanged"]

SQLITE_MAGIC = b"SQLite format 3\x00"
DIFF_LINES = 40  # per file: enough to see what changed, short enough to read


@dataclass(frozen=True)
class Snapshot:
    """Every file's bytes (and every folder, as None) under some roots, keyed by path."""

    entries: dict[Path, bytes | None]

    def diff(self, after: Snapshot) -> str:
        """What differs from `after`: added, removed, changed (with a diff); '' if the same."""
        report: list[str] = []
        for path in sorted(self.entries.keys() | after.entries.keys()):
            old, new = self.entries.get(path, b"<absent>"), after.entries.get(path, b"<absent>")
            if path not in after.entries:
                report.append(f"removed: {path}")
            elif path not in self.entries:
                kind = "folder" if new is None else f"{len(new)} bytes"
                report.append(f"added: {path} ({kind})")
            elif old != new:
                report.append(f"changed: {path}")
                report.extend(_content_diff(old, new))
        return "\n".join(report)

    def assert_same(self, after: Snapshot) -> None:
        """Fail with the readable diff if `after` is not byte-for-byte this snapshot."""
        difference = self.diff(after)
        assert not difference, f"state changed:\n{difference}"


def snapshot(*roots: Path) -> Snapshot:
    """Read every file and folder under `roots` (a root may be a file or not exist yet)."""
    entries: dict[Path, bytes | None] = {}
    for root in roots:
        if root.is_file():
            entries[root] = root.read_bytes()
        elif root.is_dir():
            entries[root] = None
            for path in sorted(root.rglob("*")):
                # A symlink is recorded by where it points, not followed out of the root.
                if path.is_symlink():
                    entries[path] = b"-> " + str(path.readlink()).encode()
                else:
                    entries[path] = path.read_bytes() if path.is_file() else None
    return Snapshot(entries)


@contextmanager
def unchanged(*roots: Path) -> Iterator[Snapshot]:
    """Assert that the block leaves every file and folder under `roots` byte-for-byte as it was."""
    before = snapshot(*roots)
    yield before
    before.assert_same(snapshot(*roots))


def _content_diff(old: bytes | None, new: bytes | None) -> list[str]:
    """A short diff of two versions of one file: SQL for SQLite, lines for text, hashes else."""
    if old is None or new is None:
        return ["  folder became a file" if old is None else "  file became a folder"]
    if old.startswith(SQLITE_MAGIC) and new.startswith(SQLITE_MAGIC):
        before, after = _sql_dump(old), _sql_dump(new)
    else:
        try:
            before, after = old.decode().splitlines(), new.decode().splitlines()
        except UnicodeDecodeError:
            return [f"  {len(old)} bytes {_digest(old)} -> {len(new)} bytes {_digest(new)}"]
    lines = list(difflib.unified_diff(before, after, "before", "after", lineterm="", n=1))
    if not lines:  # same rows, different pages (a vacuum, a header counter)
        return [f"  same content, bytes differ: {_digest(old)} -> {_digest(new)}"]
    extra = [f"  … {len(lines) - DIFF_LINES} more lines"] if len(lines) > DIFF_LINES else []
    return [f"  {line}" for line in lines[:DIFF_LINES]] + extra


def _sql_dump(data: bytes) -> list[str]:
    """The rows of an SQLite database given as bytes, as SQL lines (read from a copy)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "copy.sqlite3"
        copy.write_bytes(data)
        connection = sqlite3.connect(copy)
        try:
            return list(connection.iterdump())
        finally:
            connection.close()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]
