"""`python run.py db …` and `subscribers …` run in this process, on a site in a temporary folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete

from cli.main import main
from guide.records import NewSubscriber, Sent
from guide.schema import subscribers
from guide.store import Store
from tests.harness import LINK_SECRET, clean_env

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Ran:
    """What one command printed and its exit status."""

    code: int
    out: str
    err: str


class Site:
    """A config.yaml with its state folder under tmp_path; `run` runs one command line."""

    def __init__(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        **settings: Any,
    ) -> None:
        self.root = root
        self.state = root / "state"
        self.database = self.state / "guide.sqlite3"
        self.config = root / "config.yaml"
        data = {"state_dir": str(self.state), "lessons": {"dir": str(LESSONS)}} | settings
        self.config.write_text(yaml.safe_dump(data), encoding="utf-8")
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def run(self, *args: str, **env: str) -> Ran:
        """Run `run.py --config … ARGS` with a clean environment plus `env`."""
        with self.monkeypatch.context() as patch:
            for key in list(os.environ):
                patch.delenv(key)
            for key, value in clean_env(DRG_LINK_SECRET=LINK_SECRET, **env).items():
                patch.setenv(key, value)
            # main() sets the umask the service runs with; the test process keeps its own.
            umask = os.umask(0o077)
            try:
                code = main(["--config", str(self.config), *args])
            finally:
                os.umask(umask)
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err
        return Ran(code, captured.out, captured.err)


@pytest.fixture
def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Site:
    """A fresh site with the shipped lessons and SQLite in its state folder."""
    return Site(tmp_path, monkeypatch, capsys)


async def seed(url: str, sqlite_path: Path, count: int) -> None:
    """`count` subscribers with a delivery each; one erased, and the newest deleted (so the
    highest id ever used is above every id left, as after an unconfirmed sign-up is purged)."""
    store = await Store.open(url, sqlite_path=sqlite_path)
    try:
        ids = []
        for i in range(count):
            new = NewSubscriber(
                f"p{i}@example.org", "no-contact", "Europe/Berlin", "07:30", name=f"P {i}"
            )
            sub, _ = await store.add(
                new, status="active", now=NOW, next_due_at=NOW + timedelta(hours=i), actor="test"
            )
            ids.append(sub.id)
        tomorrow = NOW + timedelta(days=1)
        await store.record([Sent(i, 0, "day-01", f"<{i}@x>", NOW, tomorrow) for i in ids], NOW)
        await store.erase(ids[1], now=NOW, actor="test")
        async with store.engine.begin() as conn:
            await conn.execute(delete(subscribers).where(subscribers.c.id == ids[-1]))
    finally:
        await store.close()
