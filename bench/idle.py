"""The cost of a pass when nobody is due, at 1,000,000 subscribers, on SQLite and PostgreSQL.

    .venv/bin/python bench/idle.py --subscribers 1000000 --passes 20

Seeds the subscribers with none due (90% active and due tomorrow, the rest paused, completed
or unsubscribed), then times `Dispatcher.tick` passes of the real service (wiring.build, the
smtp transport with its sender child; nothing is sent, so no connection opens). PostgreSQL is a
throwaway server (tests/pgserver.py). Each backend's passes run in a process of their own, so
the RSS is theirs. Also prints the plan of the claim query. Target: a pass <= 50 ms.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from seeding import Shape, seed  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from tests.pgserver import find_bindir, start_server  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TARGET_MS = 50.0


def none_due(now: datetime) -> Shape:
    """90% active and due tomorrow (spread over a day), 5% paused, 4% completed, 1% gone."""

    def shape(i: int) -> tuple[str, datetime | None]:
        kind = i % 100
        if kind < 90:
            return "active", now + timedelta(hours=12, minutes=i % 1440)
        if kind < 95:
            return "paused", None
        return ("completed" if kind < 99 else "unsubscribed"), None

    return shape


def bench_config(state: Path, url: str, lessons: Path) -> Any:
    """The service's configuration: the smtp transport to a port nobody needs to answer."""
    from guide.config import Config, DispatchConfig, SMTPConfig

    return Config(
        state_dir=state,
        database_url=url,
        lessons_dir=lessons,
        transport="smtp",
        smtp=SMTPConfig(host="127.0.0.1", port=9, security="none"),
        dispatch=DispatchConfig(),
        link_secret=secrets.token_hex(32),
    )


def capture_claim(engine: AsyncEngine) -> list[tuple[str, Any]]:
    """Record the statements claim_due sends (the UPDATE … RETURNING), with their parameters."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if (
            statement.lstrip().upper().startswith("UPDATE SUBSCRIBERS")
            and "lease_owner" in statement
        ):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return seen


async def claim_plan(
    engine: AsyncEngine, dialect: str, statement: str, parameters: Any
) -> list[str]:
    """The plan of the claim exactly as the store sent it (ANALYZE, rolled back, on PostgreSQL)."""
    # EXPLAIN ANALYZE runs the UPDATE: in a transaction that is rolled back, no lease is left.
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    async with engine.connect() as conn:
        transaction = await conn.begin()
        rows = (await conn.exec_driver_sql(prefix + statement, parameters)).all()
        await transaction.rollback()
    return [" | ".join(str(v) for v in row) for row in rows]


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def phase_seed(state: Path, url: str, count: int) -> dict[str, Any]:
    """Create the schema and the subscribers."""
    from guide.store import Store

    store = await Store.open(url, sqlite_path=state / "guide.sqlite3")
    started = time.perf_counter()
    await seed(store.engine, count, NOW, none_due(NOW))
    seconds = time.perf_counter() - started
    await store.close()
    return {"seconds": seconds}


async def timed(times: int, step: Callable[[], Awaitable[object]]) -> list[float]:
    """Milliseconds each of `times` awaits of `step()` took."""
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        await step()
        taken.append((time.perf_counter() - started) * 1000)
    return taken


async def phase_passes(state: Path, url: str, passes: int, lessons: Path) -> dict[str, Any]:
    """Time `passes` idle ticks of one built service, then the claim alone and the report."""
    from wiring import build

    parts = await build(bench_config(state, url, lessons), clock=lambda: NOW)
    claims = capture_claim(parts.store.engine)
    settings = parts.config.dispatch

    async def idle_pass() -> None:
        report = await parts.dispatcher.tick(NOW)
        if report.claimed:
            raise SystemExit(f"an idle pass claimed {report.claimed}: the seed is wrong")

    async def claim_alone() -> None:
        lease = NOW + timedelta(seconds=settings.lease_seconds)
        await parts.store.claim_due(NOW, settings.batch_size, "bench", lease)

    async def report() -> None:
        await parts.store.report(NOW, NOW + timedelta(hours=1), NOW - timedelta(days=1))

    try:
        pass_ms = await timed(passes, idle_pass)
        rss = rss_mb()  # of the process that has just run the passes, before anything else
        if not claims:
            raise SystemExit("no claim statement was seen: has claim_due changed its shape?")
        claim = claims[-1]
        # The claim alone, as the store runs it: what the pass adds is the rest.
        claim_ms = await timed(passes, claim_alone)
        # Not part of a pass, but every /metrics scrape and `status` run it: worth knowing.
        report_ms = await timed(3, report)
        plan = await claim_plan(parts.store.engine, parts.store.dialect, *claim)
    finally:
        await parts.close()
    return {
        "ms": pass_ms,
        "claim_ms": claim_ms,
        "report_ms": report_ms,
        "plan": plan,
        "claim": claim[0],
        "rss_mb": rss,
        "load": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_phase(*args: str) -> dict[str, Any]:
    """One phase in a fresh interpreter; its last stdout line is its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def backend(name: str, url: str, args: argparse.Namespace, state: Path) -> None:
    """Seed one backend, time its passes, print the figures and the claim's plan."""
    state.mkdir(parents=True, exist_ok=True)
    seeded = run_phase("seed", str(state), url, str(args.subscribers))
    print(f"{name}: seeded {args.subscribers:,} (none due) in {seeded['seconds']:.1f} s")
    got = run_phase("passes", str(state), url, str(args.passes), str(args.lessons))
    ms = got["ms"]
    verdict = "ok" if statistics.median(ms) <= TARGET_MS else "OVER TARGET"
    print(
        f"{name}: {len(ms)} idle passes: median {statistics.median(ms):.1f} ms, "
        f"max {max(ms):.1f} ms, first {ms[0]:.1f} ms (target <= {TARGET_MS:.0f} ms: {verdict}); "
        f"RSS {got['rss_mb']:.0f} MB (peak {got['peak_rss_mb']:.0f} MB)"
    )
    claim_ms = got["claim_ms"]
    print(
        f"{name}: claim_due alone: median {statistics.median(claim_ms):.1f} ms, "
        f"max {max(claim_ms):.1f} ms; load average {got['load']:.1f}"
    )
    print(
        f"{name}: not a pass: Store.report (status, /metrics) median "
        f"{statistics.median(got['report_ms']):.0f} ms"
    )
    print(f"{name}: the claim, as sent: {' '.join(got['claim'].split())}")
    print(f"{name}: its plan:")
    for line in got["plan"]:
        print(f"    {line}")


def main() -> None:
    """Parse the options; seed and time each backend."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--lessons", type=Path, default=REPO / "lessons", help="lessons folder")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        name, state, url, *rest = args.phase
        if name == "seed":
            result = asyncio.run(phase_seed(Path(state), url, int(rest[0])))
        else:
            result = asyncio.run(phase_passes(Path(state), url, int(rest[0]), Path(rest[1])))
        print(json.dumps(result))
        return

    print(f"{os.cpu_count()} CPUs, shared with PostgreSQL when it runs")
    with tempfile.TemporaryDirectory(prefix="drg-idle-") as tmp:
        for name in args.backends.split(","):
            if name == "sqlite":
                backend(name, "", args, Path(tmp) / "sqlite")
                continue
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
            server = start_server(bindir)
            try:
                backend(name, server.url, args, Path(tmp) / "postgresql")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
