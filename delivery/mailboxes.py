"""Where bounce reports are read from: stdin (a pipe transport) or a Maildir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# A report carries the returned message (a lesson is some 20 KB); what lies beyond this is
# the tail of a huge original, which the report's own parts come before.
MAX_REPORT_BYTES = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


def read_limited(stream: BinaryIO, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Up to `limit` bytes of `stream`, reading the rest to its end so the writer never blocks."""
    data = stream.read(limit)
    while stream.read(_CHUNK):
        pass  # a pipe transport counts an unread rest as a failed delivery
    return data


@dataclass(frozen=True)
class MaildirMessage:
    """One message in a Maildir's new/ folder."""

    path: Path

    def read(self) -> bytes:
        """Its first MAX_REPORT_BYTES bytes."""
        with self.path.open("rb") as handle:
            return handle.read(MAX_REPORT_BYTES)

    def done(self) -> Path:
        """Move it to cur/ marked seen (the Maildir convention, `:2,S`), as a mail client would."""
        target = self.path.parent.parent / "cur" / f"{self.path.name.partition(':')[0]}:2,S"
        os.rename(self.path, target)
        return target


def maildir_messages(root: Path) -> Iterator[MaildirMessage]:
    """The messages waiting in `root`/new, oldest name first; FileNotFoundError without one."""
    new = root / "new"
    if not (root / "cur").is_dir():
        raise FileNotFoundError(2, "not a Maildir (no cur/ folder)", str(root))
    names = sorted(entry.name for entry in os.scandir(new) if entry.is_file())
    for name in names:
        if not name.startswith("."):
            yield MaildirMessage(new / name)
