"""Dispatch throughput and memory: the service vs a raw aiosmtplib blast vs naive smtplib.

    .venv/bin/python bench/dispatch.py --subscribers 100000

(a) is the service (`Dispatcher.tick` on uvloop, as run.py runs it); (b) raw aiosmtplib
sending the same bytes over the same number of connections, on asyncio's loop and on uvloop
(aiosmtplib cannot pipeline, so four round trips a message), and the service's own
pipelining SMTP connections alone (two round trips: the transport's ceiling, no store);
(c) a naive smtplib loop. Every subscriber is due at once; SQLite in a temporary folder; a local sink (Postfix's
smtp-sink when installed, else aiosmtpd in its own process). Each phase runs in its own
process so its peak RSS is its own. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A strong link-signing key: weak ones are refused.
BENCH_SECRET = "DqyJ1Vt0u2r7zUwYpDk4mH8bXfNc6LsGaRe9oTiQ-Ow"  # noqa: S105
sys.path.insert(0, str(REPO))

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sink(port: int, kind: str) -> Iterator[str]:
    """Run the SMTP sink in its own process for the duration."""
    if kind == "auto":
        kind = "smtp-sink" if shutil.which("smtp-sink") else "aiosmtpd"
    if kind == "smtp-sink":
        command = ["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "2048"]
    else:
        command = [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{kind} did not start")
        yield kind
    finally:
        process.terminate()
        process.wait(10)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_config(state: Path, port: int, connections: int) -> Any:
    from guide.config import Config, DispatchConfig, SMTPConfig

    return Config(
        state_dir=state,
        lessons_dir=REPO / "lessons",
        transport="smtp",
        smtp=SMTPConfig(host="127.0.0.1", port=port, security="none", timeout=60),
        dispatch=DispatchConfig(
            connections=connections, batch_size=1000, commit_every=500, lease_seconds=3600
        ),
        link_secret=BENCH_SECRET,
    )


async def seed(state: Path, count: int) -> None:
    """Insert `count` active subscribers, all due, as fast as SQLite takes them."""
    from seeding import all_due
    from seeding import seed as seed_rows

    from guide.store import Store

    store = await Store.open("", sqlite_path=state / "guide.sqlite3")
    await seed_rows(store.engine, count, NOW, all_due(NOW))
    await store.close()


def sender_peak_rss_mb(transport: Any) -> float:
    """Peak RSS of the sender child (dispatch.sender_process), read while it still runs.

    Not RUSAGE_CHILDREN: that counts the moment between fork and exec, when the child still
    maps all of the parent's memory.
    """
    pid = getattr(transport, "pid", None)  # ProcessTransport.pid: None before the first send
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def phase_service(state: Path, port: int, connections: int) -> dict[str, Any]:
    from wiring import build

    parts = await build(bench_config(state, port, connections), clock=lambda: NOW)
    started = time.perf_counter()
    report = await parts.dispatcher.tick(NOW)
    elapsed = time.perf_counter() - started
    sender_rss = sender_peak_rss_mb(parts.transport)
    await parts.close()
    return {
        "sent": report.results["sent"],
        "seconds": elapsed,
        "rss_mb": peak_rss_mb(),
        "sender_rss_mb": sender_rss,
        "report": str(report),
    }


async def phase_raw(port: int, connections: int, count: int) -> dict[str, Any]:
    import aiosmtplib
    from tests_support import sample_message

    data = sample_message()
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    async def blast(n: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
        await client.connect()
        for i in range(n):
            await client.sendmail("guide@localhost", [f"reader{i}@example.org"], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(blast(n) for n in per))
    return {"sent": count, "seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


async def phase_pipelined(port: int, connections: int, count: int) -> dict[str, Any]:
    """The project's own SMTP connections (PIPELINING) blasting the same bytes: no store,
    no rendering, no sender process. The ceiling of the transport itself."""
    from tests_support import sample_message

    from delivery.transports import Envelope
    from delivery.transports.smtp import SMTPConnection
    from guide.config import SMTPConfig

    data = sample_message()
    config = SMTPConfig(host="127.0.0.1", port=port, security="none", timeout=60)
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    async def blast(n: int) -> None:
        connection = SMTPConnection(config)
        for i in range(n):
            result = await connection.send(
                Envelope("guide@localhost", f"reader{i}@example.org", data)
            )
            assert result.delivered, result
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(blast(n) for n in per))
    return {"sent": count, "seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


def phase_naive(port: int, count: int) -> dict[str, Any]:
    """What a first version would do: render everything and open a connection per message."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from guide.config import Config
    from guide.lessons import load_library
    from guide.render import markdown_to_html, markdown_to_text, render_template_body

    config = Config(lessons_dir=REPO / "lessons")
    sequence = load_library(REPO / "lessons")["no-contact"]
    env = Environment(
        loader=FileSystemLoader(REPO / "templates" / "email"),
        autoescape=select_autoescape(["html"]),
    )
    footer = config.footer
    crisis = footer.crisis_footers().footer("US", False)
    started = time.perf_counter()
    for i in range(count):
        lesson = sequence.lessons[i % len(sequence)]
        body = render_template_body(
            lesson.body,
            {
                "sequence_title": sequence.title,
                "day": 1,
                "total_days": 30,
                "lesson_title": lesson.title,
            },
        )
        context = {
            "greeting": "Hi Sam,",
            "manage_url": "http://x/m",
            "unsubscribe_url": "http://x/u",
            "online_url": "",
            "crisis": crisis,
            "disclaimer": footer.disclaimer,
            "day": 1,
            "total_days": 30,
            "sequence_title": sequence.title,
            "phase_title": lesson.phase,
            "lesson_title": lesson.title,
            "content_note": lesson.content_note,
            "reflection": lesson.reflection,
            "body_html": markdown_to_html(body),
            "body_text": markdown_to_text(body),
            "discreet_subject": "",
            "discreet": False,
            "title": lesson.subject,
            "preheader": "",
        }
        message = EmailMessage()
        message["From"] = f"{config.sender.name} <{config.sender.address}>"
        message["To"] = f"reader{i}@example.org"
        message["Subject"] = lesson.subject
        message["Date"] = format_datetime(NOW)
        message["Message-ID"] = make_msgid(domain="localhost")
        message.set_content(env.get_template("lesson.txt").render(context))
        message.add_alternative(env.get_template("lesson.html").render(context), subtype="html")
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.send_message(message)
    return {"sent": count, "seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


def run_phase(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--naive", type=int, default=2_000, help="messages for the smtplib loop")
    parser.add_argument(
        "--raw", type=int, default=200_000, help="messages for each raw aiosmtplib blast"
    )
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        name, *rest = args.phase
        if name == "seed":
            asyncio.run(seed(Path(rest[0]), int(rest[1])))
            print(json.dumps({"rss_mb": peak_rss_mb()}))
        elif name == "service":
            from guide import eventloop

            eventloop.install()  # as run.py does: the service runs on uvloop where installed
            print(json.dumps(asyncio.run(phase_service(Path(rest[0]), int(rest[1]), int(rest[2])))))
        elif name == "pipelined":
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            print(
                json.dumps(asyncio.run(phase_pipelined(int(rest[0]), int(rest[1]), int(rest[2]))))
            )
        elif name == "raw":
            if rest[3] == "uvloop":
                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            print(json.dumps(asyncio.run(phase_raw(int(rest[0]), int(rest[1]), int(rest[2])))))
        else:
            print(json.dumps(phase_naive(int(rest[0]), int(rest[1]))))
        return

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="drg-bench-") as tmp, sink(port, args.sink) as kind:
        state = Path(tmp) / "state"
        started = time.perf_counter()
        run_phase("seed", str(state), str(args.subscribers))
        print(
            f"seeded {args.subscribers:,} subscribers in {time.perf_counter() - started:.1f} s; sink: {kind}"
        )
        service = run_phase("service", str(state), str(port), str(args.connections))
        # A rate, so a bounded count serves; both event loops, since the service runs on
        # uvloop and the fair baseline is the faster of the two.
        count = str(min(args.subscribers, args.raw))
        raw = run_phase("raw", str(port), str(args.connections), count, "asyncio")
        raw_uv = run_phase("raw", str(port), str(args.connections), count, "uvloop")
        pipelined = run_phase("pipelined", str(port), str(args.connections), count)
        naive = run_phase("naive", str(port), str(args.naive))

    rate = {
        name: r["sent"] / r["seconds"]
        for name, r in (
            ("a", service),
            ("b", raw),
            ("b2", raw_uv),
            ("p", pipelined),
            ("c", naive),
        )
    }
    best = max(rate["b"], rate["b2"])
    assert service["sent"] == args.subscribers, service
    print(
        f"(a) service end-to-end : {rate['a']:8.0f} msg/s  ({service['sent']:,} in {service['seconds']:.1f} s)"
    )
    print(
        f"(b) raw aiosmtplib     : {rate['b']:8.0f} msg/s  ({raw['sent']:,} over {args.connections} connections, asyncio loop)"
    )
    print(f"    raw aiosmtplib     : {rate['b2']:8.0f} msg/s  (the same on uvloop)")
    print(
        f"    raw, pipelined     : {rate['p']:8.0f} msg/s  (the service's own SMTP connections "
        f"alone, RFC 2920; a/this = {rate['a'] / rate['p']:.2f})"
    )
    print(
        f"(c) naive smtplib      : {rate['c']:8.0f} msg/s  ({naive['sent']:,}: render + EmailMessage + a connection each)"
    )
    print(
        f"a/b = {rate['a'] / rate['b']:.2f} (asyncio), {rate['a'] / rate['b2']:.2f} (uvloop); "
        f"against the faster: {rate['a'] / best:.2f} (target >= 0.8)   "
        f"a/c = {rate['a'] / rate['c']:.1f} (target >= 5)"
    )
    print(
        f"peak RSS of the service: {service['rss_mb']:.0f} MB, of its sender process "
        f"{service['sender_rss_mb']:.0f} MB (target <= 150 MB at 1,000,000)"
    )


if __name__ == "__main__":
    main()
