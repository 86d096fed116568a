"""The claim of a pass searches an index, never scans the table: an idle pass stays cheap.

bench/idle.py measures the pass at 1,000,000 subscribers (target <= 50 ms); a full scan of
subscribers there costs far more, so the plan of the statement claim_due really sends is
checked here, on SQLite, with planner statistics like a real deployment's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

from guide.records import email_hash
from guide.schema import subscribers
from guide.store import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def row(i: int) -> dict[str, Any]:
    """Mostly active and due tomorrow, some paused: nobody due now, as in bench/idle.py."""
    address = f"p{i}@example.org"
    paused = i % 10 == 0
    return {
        "sequence_id": "no-contact",
        "email": address,
        "email_hash": email_hash(address),
        "timezone": "UTC",
        "send_time": "08:00",
        "status": "paused" if paused else "active",
        "next_due_at": None if paused else NOW + timedelta(hours=12, minutes=i % 600),
        "created_at": NOW,
        "updated_at": NOW,
    }


async def claim_plan(store: Store) -> list[str]:
    """EXPLAIN QUERY PLAN of the statement claim_due sends, with its own parameters."""
    sent: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE SUBSCRIBERS"):
            sent.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", before)
    try:
        claimed = await store.claim_due(NOW, 500, "node", NOW + timedelta(minutes=10))
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", before)
    assert claimed == []
    assert len(sent) == 1, sent
    statement, parameters = sent[0]
    async with store.engine.connect() as conn:
        plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [str(line[-1]) for line in plan.all()]


async def test_the_claim_searches_an_index_on_next_due_at(tmp_path: Path) -> None:
    store = await Store.open("", sqlite_path=tmp_path / "guide.sqlite3")
    try:
        async with store.engine.begin() as conn:
            await conn.execute(insert(subscribers), [row(i) for i in range(3000)])
            await conn.execute(text("ANALYZE"))
        plan = await claim_plan(store)
    finally:
        await store.close()
    on_table = [line for line in plan if "subscribers" in line]
    # SCAN (of the table, or of a whole index) reads every row; SEARCH reads a range.
    assert on_table, plan
    assert not [line for line in on_table if line.startswith("SCAN")], plan
    assert [line for line in on_table if "next_due_at" in line and "INDEX" in line], plan
