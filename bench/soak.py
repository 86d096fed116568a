"""Soak: the subscriber pages and the one-click POST under load while a dispatch pass runs.

    .venv/bin/python bench/soak.py --subscribers 100000

One server process runs the real web app and a real dispatch pass on one event loop (uvloop,
collections frozen after start-up), as `serve` does (parts from wiring.build, the app from web.create_app, a pass from
dispatcher.tick), against a local SMTP sink (Postfix's smtp-sink when installed). A separate
client process (aiohttp, loopback only) requests GET /subscribe, GET /manage/<token>,
GET /unsubscribe/<token>, the RFC 8058 one-click POST /unsubscribe/<token> and GET /healthz for
real subscribers, with links signed by the project's Composer exactly as emails are. It paces
requests at --rate with at most --concurrency in flight, first without dispatch (the baseline)
and then while the pass runs, and stops at --requests, --seconds or the end of the pass.
The client is its own process so its work never runs on the loop it measures. Latency is from
sending a request to its last byte; "lag" is how late requests started against the schedule
(all --concurrency slots busy, or the client itself starved of CPU). The server's RSS and CPU
and the machine's load are sampled every second from outside. Exits 1 when a p99 during
dispatch is over --p99-ms, or on any error (a status >= 400 or an exception). Not in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from dispatch import bench_config, free_port, sink  # noqa: E402
from soak_measure import NOW, ROUTES, Sampler, client, percentile, say, stdin_lines  # noqa: E402

# A pass that found nobody due a minute before NOW: /healthz is healthy, as in a running service.
WARM = NOW - timedelta(seconds=60)


def web_config(config: Any, port: int) -> Any:
    """`config` serving (and linking to) the pages on 127.0.0.1:`port`."""
    web = dataclasses.replace(
        config.web, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"
    )
    return dataclasses.replace(config, web=web)


async def seed(state: Path, due: int, pages: int) -> dict[str, int]:
    """`due` subscribers due between WARM and NOW, then `pages` not due (the pages' readers)."""
    from seeding import seed as seed_rows
    from sqlalchemy import func, select

    from guide.schema import subscribers
    from guide.store import Store

    store = await Store.open("", sqlite_path=state / "guide.sqlite3")
    engine = store.engine
    await seed_rows(engine, due, NOW, lambda i: ("active", NOW - timedelta(seconds=i % 50)))
    await seed_rows(engine, pages, NOW, lambda i: ("active", NOW + timedelta(days=1)), "page")
    async with engine.connect() as conn:
        first = (
            await conn.execute(
                select(func.min(subscribers.c.id)).where(subscribers.c.email.like("page%"))
            )
        ).scalar_one()
    await store.close()
    return {"first_page_id": int(first)}


# -- the server: web app and dispatch on one loop ------------------------------------------------


class LoopLag:
    """How late a 10 ms timer fires: how long any await on this loop waits for its turn."""

    def __init__(self) -> None:
        self.values: list[float] = []

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.values.append((loop.time() - due) * 1000)

    def take(self) -> list[float]:
        """The samples since the last take."""
        values, self.values = self.values, []
        return values


async def server(state: Path, smtp_port: int, web_port: int, connections: int) -> None:
    """Serve the pages; from stdin, 'mark' (the loop lag so far), 'dispatch' (a pass at NOW)."""
    from aiohttp import web

    from guide import eventloop
    from web.app import create_app
    from wiring import build, web_context

    config = web_config(bench_config(state, smtp_port, connections), web_port)
    parts = await build(config, clock=lambda: NOW)
    warm = await parts.dispatcher.tick(WARM)
    assert warm.claimed == 0, warm
    runner = web.AppRunner(create_app(web_context(parts)), access_log=None)  # as serve does
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()
    commands = await stdin_lines()
    gc.freeze()  # as serve does once started: what start-up built is left out of collections
    eventloop.short_gil_turns()  # and this
    lag = LoopLag()
    probe = asyncio.create_task(lag.run())
    say({"ready": os.getpid()})
    while (command := (await commands.readline()).strip()) in (b"mark", b"dispatch"):
        if command == b"mark":
            say({"lag": lag.take()})
            continue
        lag.take()
        started = time.perf_counter()
        report = await parts.dispatcher.tick(NOW)
        seconds = time.perf_counter() - started
        sent = report.results["sent"]
        say({"sent": sent, "seconds": seconds, "report": str(report), "lag": lag.take()})
    probe.cancel()
    await runner.cleanup()
    await parts.close()


# -- the orchestrator: processes, samples from outside, the table ------------------------------


class Child:
    """A phase of this script in its own process, spoken to in JSON lines."""

    def __init__(self, log: IO[str], *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
        self.log = log
        self.name = args[0]
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--phase", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )

    def send(self, line: str) -> None:
        """One command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        """The next JSON line, or SystemExit when the process ended without one."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            self.log.seek(0)
            tail = "\n".join(self.log.read().splitlines()[-20:])
            raise SystemExit(f"the {self.name} phase ended with status {status}:\n{tail}")
        result: dict[str, Any] = json.loads(line)
        return result

    def finish(self) -> None:
        """Close stdin (the child's cue to stop) and wait for it."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)


def route_rows(phase: str, result: dict[str, Any]) -> list[str]:
    """One table line per route: count, p50/p95/p99/max, errors, and the start lag's p99."""
    lines = []
    for route in ROUTES:
        ms = result["latency"][route]
        figures = " ".join(f"{percentile(ms, q):7.1f}" for q in (50, 95, 99, 100))
        lines.append(f"{phase:9} {route:18} {len(ms):6} {figures} {result['errors'][route]:6}")
    for name, values in (
        ("client start lag", result["lag"]),
        ("server loop lag", result["lag_ms"]),
    ):
        figures = " ".join(f"{percentile(values, q):7.1f}" for q in (50, 95, 99, 100))
        lines.append(f"{phase:9} {name:18} {len(values):6} {figures}")
    return lines


def machine_lines(samples: list[dict[str, Any]]) -> list[str]:
    """RSS and CPU per phase, and a short RSS series of the dispatch phase."""
    lines = []
    for phase in ("baseline", "dispatch"):
        rows = [s for s in samples if s["phase"] == phase]
        if not rows:
            continue

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(sum(r[key] for r in rows)) / len(rows)

        rss = [r["rss_mb"] for r in rows]
        load = [r["load1"] for r in rows]
        lines.append(
            f"{phase:9} server RSS {min(rss):.0f}-{max(rss):.0f} MB; CPU in cores: server "
            f"{mean('server'):.2f}, all of ours {mean('ours'):.2f}, everything else on the "
            f"machine {mean('others'):.2f} (max {max(r['others'] for r in rows):.2f}); "
            f"load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs"
        )
    series = [s["rss_mb"] for s in samples if s["phase"] == "dispatch"]
    step = max(1, len(series) // 12)
    lines.append(
        f"dispatch  RSS every {step} s (MB): " + " ".join(f"{v:.0f}" for v in series[::step])
    )
    return lines


def run_load(log: IO[str], plan: dict[str, Any], server: Child, dispatch: bool) -> dict[str, Any]:
    """One load phase; with `dispatch`, the server's pass starts with it and stops it."""
    load = Child(log, "client", json.dumps(plan))
    load.read()  # ready: tokens built, session about to open
    load.send("go")
    if dispatch:
        server.send("dispatch")
        served = server.read()
        load.send("stop")
        result = load.read()
    else:
        result = load.read()
        server.send("mark")
        served = server.read()
    load.finish()
    result["lag_ms"] = served.pop("lag")
    result["dispatch"] = served
    return result


def main() -> int:
    """Parse the options, run the phases, print the table; 1 when the target is missed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000, help="due for the pass")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--requests", type=int, default=60_000, help="at most, per phase")
    parser.add_argument("--seconds", type=float, default=600.0, help="at most, per phase")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections")
    parser.add_argument("--p99-ms", type=float, default=50.0, help="the target during dispatch")
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return run_phase(args.phase)

    smtp_port, web_port = free_port(), free_port()
    posts = args.requests // len(ROUTES) + 1  # one fresh subscriber per one-click POST
    gets = 2_000
    with (
        tempfile.TemporaryDirectory(prefix="drg-soak-") as tmp,
        sink(smtp_port, args.sink) as kind,
        open(Path(tmp) / "stderr.log", "w+") as log,
    ):
        state = Path(tmp) / "state"
        started = time.perf_counter()
        seeding = Child(log, "seed", str(state), str(args.subscribers), str(gets + 2 * posts))
        first = seeding.read()["first_page_id"]
        seeding.finish()
        print(
            f"seeded {args.subscribers:,} due subscribers in {time.perf_counter() - started:.1f} s; sink: {kind}"
        )
        server = Child(
            log, "server", str(state), str(smtp_port), str(web_port), str(args.connections)
        )
        sampler = Sampler(server.read()["ready"])
        sampler.start()
        plan = {
            "base": f"http://127.0.0.1:{web_port}",
            "get_ids": list(range(first, first + gets)),
            "rate": args.rate,
            "concurrency": args.concurrency,
            "requests": args.requests,
        }
        sampler.phase = "baseline"
        baseline = run_load(
            log,
            {
                **plan,
                "seconds": args.baseline_seconds,
                "post_ids": list(range(first + gets, first + gets + posts)),
            },
            server,
            dispatch=False,
        )
        sampler.phase = "dispatch"
        loaded = run_load(
            log,
            {
                **plan,
                "seconds": args.seconds,
                "post_ids": list(range(first + gets + posts, first + gets + 2 * posts)),
            },
            server,
            dispatch=True,
        )
        sampler.phase = "after"
        server.finish()
        sampler.done.set()
        sampler.join()
        log.seek(0)
        problems = log.read()

    return report(args, baseline, loaded, sampler.samples, problems)


def report(
    args: argparse.Namespace,
    baseline: dict[str, Any],
    loaded: dict[str, Any],
    samples: list[dict[str, Any]],
    problems: str,
) -> int:
    """Print the table and the verdict; the exit status."""
    dispatched = loaded["dispatch"]
    rate = dispatched["sent"] / dispatched["seconds"]
    print(
        f"dispatch: {dispatched['report']} in {dispatched['seconds']:.1f} s = {rate:.0f} msg/s; "
        f"load at {args.rate:g} req/s, at most {args.concurrency} in flight, for "
        f"{loaded['elapsed']:.1f} s of the pass (baseline {baseline['elapsed']:.1f} s, no pass)"
    )
    print(
        f"{'phase':9} {'route (ms)':18} {'n':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'errors':>6}"
    )
    for line in route_rows("baseline", baseline) + route_rows("dispatch", loaded):
        print(line)
    for line in machine_lines(samples):
        print(line)
    worst = max(ROUTES, key=lambda r: percentile(loaded["latency"][r], 99))
    p99 = percentile(loaded["latency"][worst], 99)
    errors = sum(baseline["errors"].values()) + sum(loaded["errors"].values())
    for problem in baseline["first_errors"] + loaded["first_errors"]:
        print("error:", problem)
    if errors and problems.strip():
        print("server stderr (last lines):", *problems.strip().splitlines()[-15:], sep="\n  ")
    failed = p99 > args.p99_ms or errors > 0 or dispatched["sent"] != args.subscribers
    print(
        f"{'FAIL' if failed else 'PASS'}: worst p99 during dispatch {p99:.1f} ms ({worst}), "
        f"target <= {args.p99_ms:g} ms; {errors} errors; {dispatched['sent']:,} of "
        f"{args.subscribers:,} sent"
    )
    return 1 if failed else 0


def run_phase(phase: list[str]) -> int:
    """The body of a child process."""
    name, *rest = phase
    if name == "seed":
        say(asyncio.run(seed(Path(rest[0]), int(rest[1]), int(rest[2]))))
    elif name == "server":
        from guide import eventloop

        eventloop.install()  # as run.py does: serve runs on uvloop where installed
        asyncio.run(server(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3])))
    else:
        say(asyncio.run(client(json.loads(rest[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
