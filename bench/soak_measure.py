"""What the soak measures from outside the server: the paced client, and the machine sampler.

The client runs in its own process (bench/soak.py starts it), so its work never runs on the
event loop it measures; the sampler reads /proc from the orchestrator, not from the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from dispatch import BENCH_SECRET  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECRET = BENCH_SECRET  # the key bench_config signs with
ROUTES = ("GET /subscribe", "GET /manage", "GET /unsubscribe", "POST /unsubscribe", "GET /healthz")


async def stdin_lines() -> asyncio.StreamReader:
    """This process's stdin as an asyncio stream (no thread left blocked at exit)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def say(message: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    print(json.dumps(message), flush=True)


# -- the client: paced requests from another process -------------------------------------------


def client_urls(base: str, get_ids: list[int], post_ids: list[int]) -> dict[str, list[str]]:
    """Per route, the URLs to cycle through: links signed as the Composer signs emails."""
    from guide.config import Config
    from guide.tokens import LinkSigner
    from wiring import make_composer

    config = Config(lessons_dir=REPO / "lessons", link_secret=SECRET)
    config = dataclasses.replace(config, web=dataclasses.replace(config.web, public_url=base))
    composer = make_composer(config, LinkSigner(SECRET, base, config.link_lifetime))
    gets = [composer.links(sid, NOW, lesson_id="day-01") for sid in get_ids]
    posts = [composer.links(sid, NOW, lesson_id="day-01") for sid in post_ids]
    return {
        "GET /subscribe": [f"{base}/subscribe"],
        "GET /manage": [links.manage_url for links in gets],
        "GET /unsubscribe": [links.unsubscribe_url for links in gets],
        "POST /unsubscribe": [links.unsubscribe_url for links in posts],  # each used once
        "GET /healthz": [f"{base}/healthz"],
    }


async def client(plan: dict[str, Any]) -> dict[str, Any]:
    """Requests at plan['rate'] per second, at most plan['concurrency'] in flight, until a bound."""
    import aiohttp

    urls = client_urls(plan["base"], plan["get_ids"], plan["post_ids"])
    loop = asyncio.get_running_loop()
    commands = await stdin_lines()
    say({"ready": os.getpid()})
    await commands.readline()  # go
    stop = asyncio.Event()
    watcher = asyncio.create_task(commands.readline())  # stop, or the orchestrator went away
    watcher.add_done_callback(lambda _: stop.set())
    latency: dict[str, list[float]] = {route: [] for route in ROUTES}
    errors: dict[str, int] = dict.fromkeys(ROUTES, 0)
    lag: list[float] = []
    first_errors: list[str] = []
    counter = itertools.count()
    start = loop.time()
    end = start + plan["seconds"]

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        route = ROUTES[i % len(ROUTES)]
        pool = urls[route]
        method, _ = route.split()
        url = pool[(i // len(ROUTES)) % len(pool)]
        form = {"List-Unsubscribe": "One-Click"} if method == "POST" else None
        sent = loop.time()
        problem = ""
        try:
            async with http.request(method, url, data=form, allow_redirects=False) as resp:
                await resp.read()
                if resp.status >= 400:
                    problem = f"{route}: HTTP {resp.status}"
        except Exception as err:  # any failure to get an answer is an error of the run
            problem = f"{route}: {type(err).__name__}: {err}"
        latency[route].append((loop.time() - sent) * 1000)
        if problem:
            errors[route] += 1
            if len(first_errors) < 5:
                first_errors.append(problem)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            i = next(counter)
            due = start + i / plan["rate"]
            if i >= plan["requests"] or due >= end:
                return
            if due > loop.time():
                try:
                    await asyncio.wait_for(stop.wait(), due - loop.time())
                    return
                except TimeoutError:
                    pass
            lag.append((loop.time() - due) * 1000)
            await one(http, i)

    connector = aiohttp.TCPConnector(limit=plan["concurrency"])
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        await asyncio.gather(*(worker(http) for _ in range(plan["concurrency"])))
    elapsed = loop.time() - start
    watcher.cancel()
    return {
        "latency": latency,
        "errors": errors,
        "lag": lag,
        "first_errors": first_errors,
        "elapsed": elapsed,
    }


class Sampler(threading.Thread):
    """Every second: the server's RSS and CPU, our processes' CPU, the rest of the machine's."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.phase = "idle"
        self.samples: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.hz = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        previous = _ticks(self.server_pid)
        while not self.done.wait(1.0):
            now = _ticks(self.server_pid)
            seconds = now.at - previous.at

            def cores(ticks: float, seconds: float = seconds) -> float:
                return ticks / self.hz / seconds

            # Per process, so a child that exited between two samples takes nothing with it.
            ours = sum(t - previous.ours.get(pid, 0) for pid, t in now.ours.items())
            self.samples.append(
                {
                    "phase": self.phase,
                    "rss_mb": now.rss_mb,
                    "server": cores(
                        now.ours.get(self.server_pid, 0) - previous.ours.get(self.server_pid, 0)
                    ),
                    "ours": cores(ours),
                    "others": max(cores(now.busy - previous.busy - ours), 0.0),
                    "load1": os.getloadavg()[0],
                }
            )
            previous = now


@dataclasses.dataclass
class Ticks:
    """CPU ticks at one moment: per process of ours, and of the whole machine."""

    at: float
    ours: dict[int, int]
    busy: int
    rss_mb: float


def _ticks(server_pid: int) -> Ticks:
    """CPU ticks of this process and its descendants, of the machine, and the server's RSS."""
    parents: dict[int, int] = {}
    used: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        used[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    me = os.getpid()

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parents.get(pid, 1)
        return False

    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    rss = 0.0
    for line in Path(f"/proc/{server_pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return Ticks(
        at=time.monotonic(),
        ours={pid: t for pid, t in used.items() if ours(pid)},
        busy=sum(cpu) - cpu[3] - cpu[4],  # everything but idle and iowait
        rss_mb=rss,
    )


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0-100) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q / 100) - 1))])
