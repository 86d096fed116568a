"""On PostgreSQL, dispatch.rate_per_second is the relay's rate, however many nodes send.

Three real `run.py tick` processes on one PostgreSQL, each with its own relay (so the sink
knows who sent what), all limited to RATE a second. Counted at the sinks, no window of the
arrivals holds more than RATE × its length + the burst (plus the few tokens nodes take ahead
and the sending jitter); per-process limits would have let three times as many through.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from guide.schema import rate_buckets
from guide.store import Store
from guide.transfer import without_password
from scheduler.ratelimit import SharedRateLimiter
from tests.backends import reset_postgres
from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env, seed_due
from tests.smtpd import RecordingSMTP, SMTPServer, SMTPServers, threaded_smtp_servers

__all__ = ["threaded_smtp_servers"]

pytestmark = pytest.mark.postgres

NODES = 3
RATE = 100
BURST = RATE  # one second's worth, as the per-process limiter has
SUBSCRIBERS = 800
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def seed(url: str, tmp_path: Path) -> None:
    """SUBSCRIBERS active subscribers, all due before NOW (the schema made on the way)."""
    await seed_due(url, tmp_path / "unused.sqlite3", SUBSCRIBERS, NOW - timedelta(minutes=1), "r")


def write_config(tmp_path: Path, name: str, url: str, port: int) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        f"""
state_dir: {tmp_path / "state"}
lessons:
  dir: {LESSONS}
database:
  url: {url}
transport: smtp
smtp:
  host: 127.0.0.1
  port: {port}
  security: none
dispatch:
  connections: 2
  batch_size: 20
  rate_per_second: {RATE}
  sender_process: false
""",
        encoding="utf-8",
    )
    return config


Handler = Callable[[RecordingSMTP, Session, Envelope], Awaitable[str]]


def note_arrivals(server: SMTPServer, arrivals: list[tuple[float, str]], node: str) -> None:
    original: Handler = server.handler.handle_DATA

    async def handle_data(srv: RecordingSMTP, session: Session, envelope: Envelope) -> str:
        reply = await original(srv, session, envelope)
        arrivals.append((time.monotonic(), node))
        return reply

    server.handler.handle_DATA = handle_data  # type: ignore[method-assign, assignment]


def worst_excess(times: list[float], rate: float) -> float:
    """The most any window [t_i, t_j] of arrivals holds beyond rate × its length."""
    times = sorted(times)
    return max(
        (j - i + 1) - rate * (times[j] - times[i])
        for i in range(len(times))
        for j in range(i, len(times))
    )


def test_three_nodes_share_one_rate_at_the_relay(
    tmp_path: Path, postgres_server_url: str, threaded_smtp_servers: SMTPServers
) -> None:
    asyncio.run(reset_postgres(postgres_server_url))
    asyncio.run(seed(postgres_server_url, tmp_path))
    parsed = make_url(postgres_server_url)
    bare = without_password(parsed).render_as_string(hide_password=False)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DATABASE_PASSWORD=str(parsed.password))
    arrivals: list[tuple[float, str]] = []
    with ExitStack() as stack:
        relays = [stack.enter_context(threaded_smtp_servers.threaded()) for _ in range(NODES)]
        for number, relay in enumerate(relays):
            note_arrivals(relay, arrivals, f"node{number}")
        ticks = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "run.py"),
                    "--config",
                    str(write_config(tmp_path, f"node{number}", bare, relay.port)),
                    "tick",
                    "--now",
                    NOW.isoformat(),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for number, relay in enumerate(relays)
        ]
        outputs = [tick.communicate(timeout=60) for tick in ticks]
    assert [tick.returncode for tick in ticks] == [0] * NODES, outputs
    assert len(arrivals) == SUBSCRIBERS

    times = [t for t, _ in arrivals]
    start = min(times)
    per_second = Counter(int(t - start) for t in times)
    print("\nper second at the relays:", [per_second[s] for s in range(max(per_second) + 1)])
    # Several nodes really sent at once: the limit was shared, not one node doing it all.
    by_node = Counter(node for _, node in arrivals)
    assert sum(1 for n in by_node.values() if n >= 20) >= 2, by_node
    # Tokens taken ahead (a twentieth of a second's worth per node) and a tenth of a second
    # of jitter between a token and its message's arrival are the whole tolerance.
    tolerance = NODES * RATE / 20 + RATE * 0.1 + 1
    excess = worst_excess(times, RATE)
    print(f"worst window: {excess:.1f} over {RATE}/s × its length (burst {BURST})")
    assert excess <= BURST + tolerance, per_second
    # And the rate is not far below what was asked for: (total - burst) / rate seconds.
    span = max(times) - start
    assert span <= (SUBSCRIBERS - BURST) / RATE * 1.5 + 1, span


async def test_the_shared_bucket_starts_full_refills_at_the_rate_and_caps_at_the_burst(
    tmp_path: Path, postgres_server_url: str
) -> None:
    await reset_postgres(postgres_server_url)
    store = await Store.open(postgres_server_url, sqlite_path=tmp_path / "unused.sqlite3")
    try:
        taken, available = await store.take_tokens("per_second", 50, 10.0, 20.0)
        assert (taken, available) == (20, 20.0)
        taken, available = await store.take_tokens("per_second", 50, 10.0, 20.0)
        assert taken == 0 and available < 1
        await asyncio.sleep(0.35)
        taken, available = await store.take_tokens("per_second", 50, 10.0, 20.0)
        assert taken == 3 and 3 <= available < 4.5
        # Two limiters on one fresh bucket, as two nodes: 30 sends at 20/s with a burst of 20.
        async with store.writing() as conn:
            await conn.execute(delete(rate_buckets))
        limiters = [SharedRateLimiter(20, 0, store), SharedRateLimiter(20, 0, store)]
        began = time.monotonic()
        await asyncio.gather(*(limiters[i % 2].acquire() for i in range(30)))
        assert 0.45 <= time.monotonic() - began <= 1.5
    finally:
        await store.close()
