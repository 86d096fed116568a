"""`tick` on PostgreSQL with 1, 2 and 3 nodes at once: throughput, and exactly one each.

    .venv/bin/python bench/nodes.py --subscribers 30000

Starts a throwaway PostgreSQL (tests/pgserver.py: initdb in a temporary folder, as the
postgres user under root, fsync off), a local sink (Postfix's smtp-sink), and for each node
count k seeds every subscriber as due and runs k real `run.py tick` processes at once, each
its own node (lease owner host:pid). Then it checks, in the database and at the sink, that
every subscriber got exactly one lesson. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from seeding import all_due, clear, seed  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from guide.schema import deliveries, subscribers  # noqa: E402
from guide.store import Store  # noqa: E402
from tests.pgserver import find_bindir, free_port, start_server  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPORT = re.compile(r"claimed (\d+): (.*)")


@dataclass(frozen=True)
class Round:
    """What k nodes did together."""

    nodes: int
    seconds: float
    node_seconds: list[float]
    claimed: list[int]
    sent: list[int]
    sink: int
    check: dict[str, int]
    load: float
    cpu: float


def write_config(folder: Path, url: str, port: int, args: argparse.Namespace) -> Path:
    """A config.yaml for the nodes: the PG URL without its password, the smtp transport."""
    path = folder / "config.yaml"
    given = make_url(url)
    # The password comes from $DRG_DATABASE_PASSWORD: config.yaml refuses one in the URL.
    bare = URL.create(
        given.drivername,
        username=given.username,
        host=given.host,
        port=given.port,
        database=given.database,
    ).render_as_string()
    path.write_text(
        f"""state_dir: {folder / "state"}
log_level: WARNING
database:
  url: "{bare}"
lessons:
  dir: {args.lessons}
transport: smtp
smtp:
  host: 127.0.0.1
  port: {port}
  security: none
  timeout: 60
dispatch:
  connections: {args.connections}
  batch_size: {args.batch_size}
  commit_every: {args.commit_every}
  lease_seconds: 3600
"""
    )
    return path


async def tick_processes(
    config: Path, password: str, count: int
) -> tuple[float, list[tuple[float, str]]]:
    """Run `count` tick processes at once: wall time until the last exits; each one's own."""
    env = {
        **os.environ,
        "DRG_DATABASE_PASSWORD": password,
        "DRG_LINK_SECRET": secrets.token_hex(32),
    }
    argv = [str(REPO / "run.py"), "--config", str(config), "tick", "--now", NOW.isoformat()]
    started = time.perf_counter()

    async def node() -> tuple[float, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, env=env, stdout=PIPE, stderr=PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"tick exited {proc.returncode}:\n{out.decode()}\n{err.decode()}")
        return time.perf_counter() - started, out.decode()

    finished = await asyncio.gather(*(node() for _ in range(count)))
    return time.perf_counter() - started, finished


def children_cpu() -> float:
    """CPU seconds of the reaped children: the tick processes and their sender children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse(output: str) -> tuple[int, int]:
    """(claimed, sent) from a tick's report line."""
    match = REPORT.search(output)
    if match is None:
        if "nothing due" in output:
            return 0, 0
        raise SystemExit(f"no report in tick output: {output!r}")
    sent = re.search(r"\bsent (\d+)", match.group(2))
    return int(match.group(1)), int(sent.group(1)) if sent else 0


async def check(engine: AsyncEngine) -> dict[str, int]:
    """Deliveries per subscriber, from the database: duplicates, missed, leases left, still due."""
    per = (
        select(deliveries.c.subscriber_id, func.count().label("n"))
        .group_by(deliveries.c.subscriber_id)
        .subquery()
    )
    s = subscribers.c
    async with engine.connect() as conn:

        async def one(query: Any) -> int:
            return int((await conn.execute(query)).scalar_one())

        return {
            "subscribers": await one(select(func.count()).select_from(subscribers)),
            "deliveries": await one(select(func.count()).select_from(deliveries)),
            "duplicates": await one(select(func.count()).select_from(per).where(per.c.n > 1)),
            "missed": await one(
                select(func.count())
                .select_from(subscribers.outerjoin(per, per.c.subscriber_id == s.id))
                .where(per.c.subscriber_id.is_(None))
            ),
            "leased": await one(select(func.count()).where(s.lease_owner.is_not(None))),
            "still_due": await one(
                select(func.count()).where(s.status == "active", s.next_due_at <= NOW)
            ),
        }


def sink_count(output: Path) -> int:
    """Messages smtp-sink accepted, from its last running counter (-c)."""
    found = re.findall(r"mesg=(\d+)", output.read_text())
    return int(found[-1]) if found else 0


def start_sink(port: int, output: Path) -> subprocess.Popen[bytes]:
    """smtp-sink with running counters (-c) written to `output`, accepting connections."""
    with output.open("wb") as out:
        proc = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{port}", "2048"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("smtp-sink did not start")


async def one_round(
    store: Store, folder: Path, password: str, nodes: int, args: argparse.Namespace
) -> Round:
    """Seed everyone due, run `nodes` ticks at once against a fresh sink, and check."""
    await clear(store.engine)
    await seed(store.engine, args.subscribers, NOW, all_due(NOW))
    port = free_port()
    counter = folder / f"sink-{nodes}.out"
    sink = start_sink(port, counter)
    try:
        config = write_config(
            folder, store.engine.url.render_as_string(hide_password=False), port, args
        )
        before = children_cpu()
        seconds, finished = await tick_processes(config, password, nodes)
        cpu = children_cpu() - before
    finally:
        sink.terminate()
        sink.wait(10)
    counts = [parse(out) for _, out in finished]
    return Round(
        nodes=nodes,
        seconds=seconds,
        node_seconds=[t for t, _ in finished],
        claimed=[c for c, _ in counts],
        sent=[s for _, s in counts],
        sink=sink_count(counter),
        check=await check(store.engine),
        load=os.getloadavg()[0],
        cpu=cpu,
    )


async def startup_seconds(store: Store, folder: Path, password: str, args: Any) -> float:
    """One `tick` process with nobody to send to: interpreter, imports, migrations check."""
    await clear(store.engine)
    config = write_config(
        folder, store.engine.url.render_as_string(hide_password=False), free_port(), args
    )
    seconds, _ = await tick_processes(config, password, 1)
    return seconds


def table(rounds: list[Round], startup: float, total: int) -> None:
    """The results, one line per node count."""
    print(
        f"{'nodes':>5} {'wall s':>7} {'msg/s':>7} {'msg/s*':>7} {'sink':>7} {'rows':>7} "
        f"{'dup':>4} {'missed':>6} {'leased':>6} {'due':>4} {'load':>5} {'cpu s':>6} "
        "per node: sent in seconds"
    )
    for r in rounds:
        c = r.check
        per_node = "; ".join(
            f"{n:,} in {t:.1f}" for n, t in zip(r.sent, r.node_seconds, strict=True)
        )
        busy = max(r.seconds - startup, 1e-9)
        print(
            f"{r.nodes:>5} {r.seconds:>7.2f} {total / r.seconds:>7.0f} {total / busy:>7.0f} "
            f"{r.sink:>7,} {c['deliveries']:>7,} {c['duplicates']:>4} {c['missed']:>6} "
            f"{c['leased']:>6} {c['still_due']:>4} {r.load:>5.1f} {r.cpu:>6.1f} {per_node}"
        )
    print(
        f"msg/s* = after subtracting the start-up of one idle `tick` process ({startup:.2f} s); "
        "sink = messages smtp-sink accepted; rows = delivery rows; dup = subscribers with more "
        "than one; missed = with none; leased, due = left after the round; load = the machine's "
        "1-minute load average at the end (other work on the machine slows every figure); "
        "cpu s = CPU seconds the nodes and their sender children used (not PostgreSQL's)"
    )


def verdict(rounds: list[Round], total: int) -> bool:
    """True when every round sent each subscriber exactly one lesson."""
    good = True
    for r in rounds:
        c = r.check
        exact = (
            sum(r.sent) == total
            and r.sink == total
            and c["deliveries"] == total
            and c["duplicates"] == 0
            and c["missed"] == 0
            and c["leased"] == 0
            and c["still_due"] == 0
        )
        if not exact:
            print(f"FAIL with {r.nodes} node(s): {r}")
            good = False
    return good


async def run(args: argparse.Namespace) -> bool:
    """Every node count in one run, on one server."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    server = start_server(bindir)
    try:
        with tempfile.TemporaryDirectory(prefix="drg-nodes-") as tmp:
            folder = Path(tmp)
            store = await Store.open(server.url, sqlite_path=folder / "unused.sqlite3")
            try:
                startup = await startup_seconds(store, folder, server.password, args)
                rounds = []
                for nodes in args.nodes:
                    rounds.append(await one_round(store, folder, server.password, nodes, args))
                    print(f"{nodes} node(s): {rounds[-1].seconds:.2f} s", flush=True)
            finally:
                await store.close()
    finally:
        server.stop()
    print(
        f"{args.subscribers:,} subscribers, all due; {os.cpu_count()} CPUs shared by the nodes, "
        f"their sender children, PostgreSQL and the sink; per node: {args.connections} "
        f"connections, batch {args.batch_size}, commit every {args.commit_every}"
    )
    table(rounds, startup, args.subscribers)
    return verdict(rounds, args.subscribers)


def main() -> None:
    """Parse the options and run every node count."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=30_000)
    parser.add_argument("--nodes", type=lambda v: [int(n) for n in v.split(",")], default=[1, 2, 3])
    parser.add_argument("--connections", type=int, default=4, help="per node")
    parser.add_argument("--lessons", type=Path, default=REPO / "lessons", help="lessons folder")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--commit-every", type=int, default=200)
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
