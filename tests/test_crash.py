"""Crash safety, the honest way: a real `run.py tick` process killed with SIGKILL mid-send."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session

from tests.harness import LESSONS, LINK_SECRET, REPO, day_of, message_id_of
from tests.smtpd import RecordingSMTP, SMTPServers, threaded_smtp_servers

__all__ = ["threaded_smtp_servers"]

SUBSCRIBERS = 150
CONNECTIONS = 2
COMMIT_EVERY = 10
LEASE = 30


def write_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
state_dir: {tmp_path / "state"}
lessons:
  dir: {LESSONS}
transport: smtp
smtp:
  host: 127.0.0.1
  port: {port}
  security: none
  timeout: 10
dispatch:
  connections: {CONNECTIONS}
  commit_every: {COMMIT_EVERY}
  lease_seconds: {LEASE}
  batch_size: 40
""",
        encoding="utf-8",
    )
    return config


def run(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DRG_LINK_SECRET": LINK_SECRET}
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_between_the_relays_250_and_the_commit_loses_nothing(
    tmp_path: Path, threaded_smtp_servers: SMTPServers
) -> None:
    rng = random.Random(11)
    with threaded_smtp_servers.threaded() as server:
        config = write_config(tmp_path, server.port)
        people = tmp_path / "people.csv"
        rows = [f"c{i}@example.org,,UTC,09:00,no," for i in range(SUBSCRIBERS)]
        people.write_text(
            "email,name,timezone,send_time,discreet,sequence\n" + "\n".join(rows) + "\n"
        )
        imported = run(config, "subscribers", "import", str(people))
        out, err = imported.communicate(timeout=60)
        assert imported.returncode == 0, err
        assert f"imported {SUBSCRIBERS} new" in out

        victim: dict[str, subprocess.Popen[str]] = {}
        kill_at = {"count": -1}
        original = server.handler.handle_DATA

        async def handle_data(srv: RecordingSMTP, session: Session, envelope: SMTPEnvelope) -> str:
            reply = await original(srv, session, envelope)
            if len(server.messages) == kill_at["count"] and "proc" in victim:
                # The 250 is about to go out; the process dies before it can commit it.
                os.kill(victim["proc"].pid, signal.SIGKILL)
            return reply

        server.handler.handle_DATA = handle_data  # type: ignore[method-assign, assignment]
        start = (datetime.now(UTC) + timedelta(days=2)).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        rounds = 3
        for round_number in range(rounds):
            kill_at["count"] = len(server.messages) + rng.randint(5, 40)
            now = start + timedelta(seconds=round_number * (LEASE + 1))
            victim["proc"] = run(config, "tick", "--now", now.isoformat())
            victim["proc"].communicate(timeout=120)
            assert victim["proc"].returncode == -signal.SIGKILL
        victim.clear()
        final = run(
            config, "tick", "--now", (start + timedelta(seconds=rounds * (LEASE + 1))).isoformat()
        )
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        received = [(m.rcpt_tos[0], m.data) for m in server.messages]

    # No lesson lost: every subscriber's day 1 is recorded and was received.
    with sqlite3.connect(tmp_path / "state" / "guide.sqlite3") as db:
        recorded = dict(
            db.execute(
                "SELECT s.email, d.message_id FROM deliveries d"
                " JOIN subscribers s ON s.id = d.subscriber_id"
            )
        )
        (unsent_leases,) = db.execute(
            "SELECT count(*) FROM subscribers WHERE lease_owner IS NOT NULL"
        ).fetchone()
    assert len(recorded) == SUBSCRIBERS
    assert unsent_leases == 0
    per_recipient: dict[str, list[bytes]] = defaultdict(list)
    for recipient, data in received:
        per_recipient[recipient].append(data)
    assert len(per_recipient) == SUBSCRIBERS
    assert all(day_of(data) == 1 for data in (d for _, d in received))
    # Duplicates only from messages in flight at each kill, and they carry the same Message-ID.
    copies = Counter(len(messages) for messages in per_recipient.values())
    duplicates = sum((n - 1) * count for n, count in copies.items())
    assert 1 <= duplicates <= rounds * (COMMIT_EVERY + CONNECTIONS)
    for recipient, messages in per_recipient.items():
        assert {message_id_of(m) for m in messages} == {recorded[recipient]}
