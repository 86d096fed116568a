"""The chaos run's SMTP sink: aiosmtpd in its own process, misbehaving at random, with a ledger.

    .venv/bin/python bench/chaos_sink.py --port 2525 --ledger ledger.tsv --seed 7 [--calm]

Per message a seeded RNG picks: a 451, a 421 and hang-up, a drop before the DATA reply, the
start of an outage (every greeting and MAIL answered 421 for a while), a slow reply, or
acceptance. An accepted message is appended to the ledger as `message_id TAB recipient TAB
day` and fsynced before the 250 goes out, so the ledger is exactly what the relay took
responsibility for. `--calm` accepts everything. Prints `ready` once listening; on SIGTERM
writes its fault counters as JSON to `--stats` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
_DAY = re.compile(rb"Day (\d+) of \d+")
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)\r?$", re.M)


def ledger_line(data: bytes, recipient: str) -> bytes:
    """The ledger entry for one accepted message: Message-ID, recipient, lesson day."""
    found = _MESSAGE_ID.search(data)
    day = _DAY.search(data)
    message_id = found.group(1).decode() if found else "-"
    lesson = day.group(1).decode() if day else "closing"
    return f"{message_id}\t{recipient}\t{lesson}\n".encode()


class ChaosHandler:
    """aiosmtpd handler: a fault or an fsynced ledger entry per message."""

    def __init__(self, ledger: Path, seed: int, calm: bool) -> None:
        # O_APPEND: one write per entry, so a line is never torn by a concurrent session.
        self.fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.rng = random.Random(seed)
        self.calm = calm
        self.outage_until = 0.0
        self.counts: Counter[str] = Counter()

    def in_outage(self) -> bool:
        """Whether the relay is refusing everything right now."""
        return time.monotonic() < self.outage_until

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Accept the sender, unless an outage is on."""
        if self.in_outage():
            self.counts["refused in outage"] += 1
            await server.push("421 4.3.2 Service not available (outage)")
            await hang_up(server)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Misbehave at random, or write the ledger entry (fsync) and answer 250."""
        roll = 1.0 if self.calm else self.rng.random()
        if roll < 0.03:
            self.counts["451"] += 1
            return "451 4.3.0 Try again later"
        if roll < 0.045:
            self.counts["421"] += 1
            await server.push("421 4.3.2 Closing connection")
            await hang_up(server)
        if roll < 0.065:
            self.counts["dropped before the DATA reply"] += 1
            await hang_up(server)
        if roll < 0.07:
            self.counts["outages"] += 1
            self.outage_until = time.monotonic() + self.rng.uniform(0.5, 2.0)
            await server.push("421 4.3.2 Service not available (outage)")
            await hang_up(server)
        if roll < 0.12:
            # A dead client cancels this task during the sleep: nothing reaches the ledger.
            self.counts["slow replies"] += 1
            await asyncio.sleep(self.rng.uniform(0.05, 1.0))
        assert isinstance(envelope.content, bytes)
        # Blocking on purpose: the entry must be on disk before the 250 leaves.
        os.write(self.fd, ledger_line(envelope.content, envelope.rcpt_tos[0]))
        os.fsync(self.fd)
        self.counts["accepted"] += 1
        return "250 2.0.0 Ok: queued"


async def hang_up(server: SMTP) -> None:
    """Close the connection and wait: connection_lost cancels the session's task."""
    assert server.transport is not None
    server.transport.close()
    await server.loop.create_future()  # never resolves; cancelled with the session


class ChaosSMTP(SMTP):
    """aiosmtpd's SMTP, greeting with 421 and hanging up during an outage."""

    def __init__(self, handler: ChaosHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.chaos = handler

    async def _handle_client(self) -> None:
        if self.chaos.in_outage():
            self.chaos.counts["refused in outage"] += 1
            await self.push("421 4.3.2 Service not available (outage)")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


async def run(port: int, ledger: Path, seed: int, calm: bool) -> Counter[str]:
    """Listen until SIGTERM; what happened to the messages."""
    loop = asyncio.get_running_loop()
    handler = ChaosHandler(ledger, seed, calm)
    listener = await loop.create_server(
        lambda: ChaosSMTP(handler, hostname="chaos.sink", loop=loop), HOST, port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    listener.close()
    os.close(handler.fd)
    return handler.counts


def main() -> None:
    """Parse the arguments and run the sink."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calm", action="store_true", help="accept every message")
    parser.add_argument("--stats", type=Path, default=None)
    args = parser.parse_args()
    counts = asyncio.run(run(args.port, args.ledger, args.seed, args.calm))
    if args.stats is not None:
        args.stats.write_text(json.dumps(dict(counts)), encoding="utf-8")


if __name__ == "__main__":
    main()
