"""tests/statecheck.py notices every kind of change to a state folder, and only changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.statecheck import snapshot, unchanged


def make_state(root: Path) -> Path:
    """A state folder like the service's: an SQLite file and a maildir outbox."""
    (root / "outbox" / "new").mkdir(parents=True)
    (root / "outbox" / "cur").mkdir()
    (root / "outbox" / "new" / "1.eml").write_bytes(b"Subject: one\r\n\r\nbody\r\n")
    with sqlite3.connect(root / "guide.sqlite3") as db:
        db.execute("CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email TEXT)")
        db.execute("INSERT INTO subscribers (email) VALUES ('a@example.org')")
    db.close()
    return root


def test_reading_everything_changes_nothing(tmp_path: Path) -> None:
    state = make_state(tmp_path / "state")
    with unchanged(state):
        db = sqlite3.connect(state / "guide.sqlite3")
        assert db.execute("SELECT email FROM subscribers").fetchall() == [("a@example.org",)]
        db.close()
        assert (state / "outbox" / "new" / "1.eml").read_bytes().startswith(b"Subject")


def test_a_new_row_is_shown_as_sql(tmp_path: Path) -> None:
    state = make_state(tmp_path / "state")
    with pytest.raises(AssertionError) as failure, unchanged(state):
        with sqlite3.connect(state / "guide.sqlite3") as db:
            db.execute("INSERT INTO subscribers (email) VALUES ('b@example.org')")
        db.close()
    assert "changed: " in str(failure.value)
    assert "+INSERT INTO \"subscribers\" VALUES(2,'b@example.org');" in str(failure.value)


def test_added_removed_and_edited_files_are_named(tmp_path: Path) -> None:
    state = make_state(tmp_path / "state")
    before = snapshot(state)
    (state / "outbox" / "new" / "2.eml").write_bytes(b"x")
    (state / "outbox" / "new" / "1.eml").write_bytes(b"Subject: two\r\n\r\nbody\r\n")
    (state / "outbox" / "cur").rmdir()
    diff = before.diff(snapshot(state))
    assert f"added: {state / 'outbox' / 'new' / '2.eml'} (1 bytes)" in diff
    assert f"removed: {state / 'outbox' / 'cur'}" in diff
    assert "-Subject: one" in diff and "+Subject: two" in diff


def test_a_root_that_appears_is_a_change(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = snapshot(state)
    state.mkdir()
    assert before.diff(snapshot(state)) == f"added: {state} (folder)"
