"""`status` shows the last pass, the live nodes, the leases they hold, and a failing relay."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from guide.node_queries import Beat
from guide.records import NewSubscriber
from guide.store import Store
from tests.db_cli import NOW, Site, site

__all__ = ["site"]


def lines_of(out: str) -> list[str]:
    """The part of the output this module is about: from the last pass on."""
    lines = out.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("last pass:")) :]


async def add_due(database: Path, count: int) -> None:
    store = await Store.open("", sqlite_path=database)
    try:
        for i in range(count):
            new = NewSubscriber(f"n{i}@example.org", "no-contact", "UTC", "08:00")
            await store.add(
                new, status="active", now=NOW, next_due_at=NOW - timedelta(hours=1), actor="test"
            )
    finally:
        await store.close()


async def other_nodes(database: Path) -> None:
    """A live serve whose sends fail, a killed node still holding leases, one long gone."""
    store = await Store.open("", sqlite_path=database)
    try:
        await store.beat(
            Beat(
                name="web1:100",
                started_at=NOW - timedelta(hours=2),
                seen_at=NOW + timedelta(seconds=5),
                last_pass_at=NOW + timedelta(seconds=4),
                last_pass_seconds=1.5,
                last_pass_result="claimed 3: retry 3",
                failing_since=NOW - timedelta(minutes=5),
                last_error="421 4.3.2 Service not available",
            )
        )
        await store.beat(Beat("killed:7", NOW - timedelta(hours=1), NOW - timedelta(minutes=3)))
        await store.beat(Beat("old:1", NOW - timedelta(days=3), NOW - timedelta(days=2)))
        claimed = await store.claim_due(NOW, 2, "killed:7", NOW + timedelta(seconds=40))
        assert len(claimed) == 2
    finally:
        await store.close()


def test_a_fresh_installation_has_no_pass_node_or_lease(site: Site) -> None:
    shown = site.run("status", "--now", NOW.isoformat())
    assert shown.code == 0, shown
    assert lines_of(shown.out) == [
        "last pass:          none recorded",
        "live nodes:         0",
        "leases held:        0",
        "relay:              unknown (no live node)",
    ]


def test_status_names_the_last_pass_the_nodes_their_leases_and_the_failing_relay(
    site: Site,
) -> None:
    asyncio.run(add_due(site.database, 3))
    ticked = site.run("tick", "--now", NOW.isoformat())
    assert ticked.code == 0, ticked
    shown = site.run("status", "--now", (NOW + timedelta(seconds=30)).isoformat())
    last, live, leases, relay = lines_of(shown.out)
    # The tick's own pass; it stopped when it ended, so it is no live node.
    assert last.startswith(f"last pass:          {NOW.isoformat(timespec='minutes')} (0:00:30 ago)")
    assert last.endswith(": claimed 3: sent 3"), last
    assert (live, leases, relay) == (
        "live nodes:         0",
        "leases held:        0",
        "relay:              unknown (no live node)",
    )

    asyncio.run(add_more_and_others(site.database))
    later = NOW + timedelta(seconds=15)
    shown = site.run("status", "--now", later.isoformat())
    assert shown.code == 0, shown
    assert lines_of(shown.out) == [
        f"last pass:          {NOW.isoformat(timespec='minutes')} "
        "(0:00:11 ago), 1.5 s on web1:100: claimed 3: retry 3",
        "live nodes:         1",
        "  web1:100                       seen 0:00:10 ago",
        "silent nodes:       1 (ended without stopping: killed?)",
        "  killed:7                       last seen 0:03:15 ago",
        "leases held:        2, the first runs out in 0:00:25",
        "  killed:7                       2, the first runs out in 0:00:25",
        "relay:              every send failing since "
        f"{(NOW - timedelta(minutes=5)).isoformat(timespec='minutes')} (0:05:15 ago) on "
        "web1:100: 421 4.3.2 Service not available (check smtp.host, smtp.port and the relay)",
    ]
    # A minute on, the killed node's leases have run out and say so; web1 is not live either.
    gone = site.run("status", "--now", (NOW + timedelta(minutes=2)).isoformat())
    assert "leases held:        2, the first runs out 0:01:20 ago (expired: the next pass " in (
        gone.out
    )
    assert "live nodes:         0\n" in gone.out
    assert "relay:              unknown (no live node)\n" in gone.out


async def add_more_and_others(database: Path) -> None:
    store = await Store.open("", sqlite_path=database)
    try:
        for i in range(2):
            new = NewSubscriber(f"m{i}@example.org", "no-contact", "UTC", "08:00")
            await store.add(
                new, status="active", now=NOW, next_due_at=NOW - timedelta(hours=1), actor="test"
            )
    finally:
        await store.close()
    await other_nodes(database)
