"""The chaos run's checks (the sink's ledger against the store's deliveries) and its table."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Kill:
    """One SIGKILL: of which process, in which round, and how long the ledger was then."""

    round: int
    target: str  # serve | child
    ledger_lines: int
    duplicates: int = 0


@dataclass(frozen=True)
class Entry:
    """One ledger line: what the relay accepted."""

    message_id: str
    recipient: str
    day: str


def read_ledger(path: Path) -> list[Entry]:
    """The ledger, in the order the sink accepted the messages."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Entry(*line.split("\t")) for line in lines]


def day_numbers(lessons: Path) -> dict[str, int]:
    """lesson id → day of the no-contact sequence."""
    from guide.lessons import load_library

    sequence = load_library(lessons)["no-contact"]
    numbered = {lesson.id: sequence.day_of(lesson.id) for lesson in sequence.lessons}
    return {lesson: day for lesson, day in numbered.items() if day is not None}


def compare(database: Path, entries: list[Entry], kills: list[Kill]) -> dict[str, int]:
    """The checks: lost, Message-ID mismatches, duplicates (counted into `kills`), skipped…"""
    days = day_numbers(REPO / "lessons")
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT s.email, d.lesson_id, d.kind, d.message_id FROM deliveries d"
            " JOIN subscribers s ON s.id = d.subscriber_id"
        ).fetchall()
        (everyone,) = db.execute("SELECT count(*) FROM subscribers").fetchone()
        (not_active,) = db.execute(
            "SELECT count(*) FROM subscribers WHERE status != 'active'"
        ).fetchone()
    recorded = {
        (email, str(days.get(lesson, "closing"))): mid
        for email, lesson, kind, mid in rows
        if kind == "sent"
    }
    accepted = {entry.message_id for entry in entries}
    lessons: dict[str, set[int]] = {}
    for email, day in recorded:
        lessons.setdefault(email, set()).add(int(day))
    first: dict[tuple[str, str], int] = {}
    unexplained = 0
    for each in kills:
        each.duplicates = 0
    for index, entry in enumerate(entries):
        key = (entry.recipient, entry.day)
        if key not in first:
            first[key] = index
            continue
        # A copy sent twice was first accepted before the kill that stopped its commit.
        kill = next((k for k in kills if first[key] < k.ledger_lines), None)
        if kill is None:
            unexplained += 1
        else:
            kill.duplicates += 1
    return {
        "sent": len(recorded),
        "accepted": len(entries),
        "lost": sum(1 for mid in recorded.values() if mid not in accepted),
        "id_mismatch": sum(
            1 for e in entries if recorded.get((e.recipient, e.day)) != e.message_id
        ),
        "duplicates": len(entries) - len(first),
        "unexplained": unexplained,
        # The run stays within one day: everyone must hold exactly day 1, no gap, no skip row.
        "skipped": sum(1 for row in rows if row[2] != "sent")
        + sum(1 for got in lessons.values() if got != {1}),
        "undelivered": int(everyone) - len(lessons),
        "not_active": int(not_active),
    }


@dataclass(frozen=True)
class Settings:
    """What one chaos run does."""

    rounds: int
    subscribers: int
    seed: int
    kill_child: bool
    connections: int
    commit_every: int
    rate: float

    @property
    def bound(self) -> int:
        """The most messages a crash may send twice (README: commit_every + connections)."""
        return self.commit_every + self.connections


@dataclass
class Run:
    """Everything the rounds did, for the table."""

    kills: list[Kill] = field(default_factory=list)
    # Processes that did not exit in time after SIGTERM, each with where its stacks are.
    hangs: list[str] = field(default_factory=list)
    # Processes that exited with a failure status after SIGTERM.
    failures: list[str] = field(default_factory=list)
    released: int = 0
    faults: Counter[str] = field(default_factory=Counter)


def table(settings: Settings, run: Run, result: dict[str, int]) -> str:
    """The summary, one check a line."""
    serve_kills = sum(1 for k in run.kills if k.target == "serve")
    child_kills = sum(1 for k in run.kills if k.target == "child")
    worst = max((k.duplicates for k in run.kills), default=0)
    faults = ", ".join(f"{name} {count}" for name, count in sorted(run.faults.items()))
    rows = [
        ("rounds", f"{settings.rounds}"),
        ("subscribers", f"{settings.subscribers}"),
        ("kills of serve", f"{serve_kills}"),
        ("kills of sender child", f"{child_kills}" + ("" if settings.kill_child else " (off)")),
        ("hung on SIGTERM (serve, tick, sink)", f"{len(run.hangs)}"),
        ("failed exit after SIGTERM", f"{len(run.failures)}"),
        ("leases released by hand", f"{run.released}"),
        ("sink faults", faults or "none"),
        ("sent (recorded in the store)", f"{result['sent']}"),
        ("accepted by the sink (ledger)", f"{result['accepted']}"),
        ("lost (recorded, never accepted)", f"{result['lost']}"),
        ("Message-ID differs from the store", f"{result['id_mismatch']}"),
        ("duplicates total", f"{result['duplicates']}"),
        ("duplicates worst per kill / bound", f"{worst} / {settings.bound}"),
        ("duplicates with no kill before them", f"{result['unexplained']}"),
        ("skipped or not exactly day 1", f"{result['skipped']}"),
        ("never delivered", f"{result['undelivered']}"),
        ("no longer active", f"{result['not_active']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def failed(settings: Settings, run: Run, result: dict[str, int]) -> list[str]:
    """The checks that did not hold."""
    worst = max((k.duplicates for k in run.kills), default=0)
    problems = [name for name in ("lost", "id_mismatch", "unexplained", "skipped") if result[name]]
    problems += [name for name in ("undelivered", "not_active") if result[name]]
    if worst > settings.bound:
        problems.append(f"duplicates per kill {worst} > bound {settings.bound}")
    problems += run.hangs + run.failures
    return problems
