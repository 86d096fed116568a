"""A real Postfix accepts a lesson, bounces it later, and `bounces ingest` stops the subscriber."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.db_cli import Site
from tests.postfix import BOUNCE_DOMAIN, RELAY_DOMAIN, Postfix, postfix  # noqa: F401

DEAD = f"nobody-here@{RELAY_DOMAIN}"


def status_of(site: Site, who: str) -> dict[str, object]:
    shown = site.run("subscribers", "show", who)
    assert shown.code == 0, shown.err
    record: dict[str, object] = json.loads(shown.out)["subscriber"]
    return record


def test_a_dsn_from_a_real_postfix_bounces_its_subscriber_within_one_ingest(
    postfix: Postfix,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = Site(
        tmp_path,
        monkeypatch,
        capsys,
        transport="smtp",
        smtp={"host": "127.0.0.1", "port": postfix.port, "security": "none"},
        sender={"address": f"guide@{BOUNCE_DOMAIN}"},
        bounces={"enabled": True},
        dispatch={"sender_process": False},
    )
    assert site.run("subscribers", "add", DEAD, "--at", "08:00").code == 0
    assert site.run("subscribers", "add", "alive@elsewhere.test", "--at", "08:00").code == 0
    # Tomorrow at noon, whatever the hour now: after 08:00 on the day the first lesson is due
    # (now + 25 hours was 00:20 the day after next when the suite ran at 23:20, when the next
    # lesson's 08:00 was still ahead and the second pass found nobody due).
    soon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    soon += timedelta(days=1)
    # Postfix answers 250 for both; nothing is known about the dead address yet.
    ran = site.run("tick", "--now", soon.isoformat())
    assert (ran.code, ran.out.strip()) == (0, "claimed 2: sent 2"), ran.err
    assert status_of(site, DEAD)["status"] == "active"

    # local(8) finds no such user and Postfix mails a DSN to the message's envelope sender.
    report = postfix.wait_for_bounce(DEAD)
    data = report.read_bytes()
    assert b"report-type=delivery-status" in data
    assert b"Status: 5.1.1" in data
    assert "from=<bounce+" in postfix.log

    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        ingested = site.run("bounces", "ingest")
    assert ingested.code == 0, ingested.err
    assert ingested.out.strip().startswith("bounces: 1 read: 1 bounced,")
    record = status_of(site, DEAD)
    assert record["status"] == "bounced"
    assert str(record["last_error"]).startswith("5.1.1 X-Postfix; unknown user")
    assert status_of(site, "alive@elsewhere.test")["status"] == "active"

    # The next day's pass sends to the live address only.
    later = site.run("tick", "--now", (soon + timedelta(days=1)).isoformat())
    assert (later.code, later.out.strip()) == (0, "claimed 1: sent 1"), later.err
    accepted = [line for line in postfix.log.splitlines() if "to=<" in line and "relay=" in line]
    assert sum(DEAD in line for line in accepted) == 1
