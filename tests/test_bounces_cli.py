"""`bounces ingest` and `bounces poll` as an operator runs them: output and exit statuses."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from delivery.verp import ReturnPath
from tests.db_cli import Site
from tests.harness import LINK_SECRET
from tests.test_bounces import fixture

SETTINGS = {"sender": {"address": "guide@guide.test"}, "bounces": {"enabled": True}}
PATH = ReturnPath(LINK_SECRET, "bounce", "guide.test")
SUMMARY = (
    "bounces: {} read: {} bounced, {} held, {} delayed, {} unsubscribed, 0 unchanged, "
    "{} ignored, {} unverified"
)


@pytest.fixture
def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Site:
    """A site with signed bounce addresses and two subscribers, ids 1 and 2."""
    made = Site(tmp_path, monkeypatch, capsys, **SETTINGS)
    for address in ("alice@reader.test", "bea@reader.test"):
        assert made.run("subscribers", "add", address).code == 0
    return made


def status(site: Site, who: str) -> str:
    shown = site.run("subscribers", "show", who)
    return str(json.loads(shown.out)["subscriber"]["status"])


def ingest(site: Site, data: bytes, *args: str) -> tuple[int, str, str]:
    with site.monkeypatch.context() as patch:
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        ran = site.run("bounces", "ingest", *args)
    return ran.code, ran.out.strip(), ran.err


def test_ingest_bounces_the_subscriber_its_address_names(site: Site) -> None:
    data = fixture("postfix-unknown-user.eml", PATH.address(1, 0), "alice@reader.test")
    code, out, err = ingest(site, data)
    assert (code, out) == (0, SUMMARY.format(1, 1, 0, 0, 0, 0, 0))
    assert "subscriber 1 bounced: 5.1.1 smtp; 550 5.1.1" in err  # the log, by id
    assert (status(site, "1"), status(site, "2")) == ("bounced", "active")


def test_ingest_takes_the_envelope_recipient_from_the_pipe_transport(site: Site) -> None:
    # Delivered to a catch-all: the headers name no bounce address, Postfix's ${recipient} does.
    data = fixture("exim-policy.eml", "bounces@guide.test", "bea@reader.test")
    code, out, _ = ingest(site, data)
    assert (code, out) == (0, SUMMARY.format(1, 0, 0, 0, 0, 0, 1))
    code, out, _ = ingest(site, data, "--recipient", PATH.address(2, 0).upper())
    assert (code, out) == (0, SUMMARY.format(1, 0, 1, 0, 0, 0, 0))
    assert status(site, "2") == "held"


def test_ingest_of_anything_unverified_or_unreadable_exits_0(site: Site) -> None:
    for data in (b"", b"\xff\xfe garbage\n", fixture("vacation-reply.eml", PATH.address(1, 0))):
        code, out, _ = ingest(site, data)
        assert code == 0
        assert out.endswith((" 0 ignored, 1 unverified", " 1 ignored, 0 unverified"))
    assert status(site, "1") == "active"


def test_ingest_exits_75_while_the_database_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    down = Site(
        tmp_path,
        monkeypatch,
        capsys,
        database={"url": "postgresql+asyncpg://drg@127.0.0.1:9/drg"},
        **SETTINGS,
    )
    with monkeypatch.context() as patch:
        data = fixture("postfix-unknown-user.eml", PATH.address(1, 0))
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        ran = down.run("bounces", "ingest")
    assert ran.code == 75
    assert ran.err.startswith("bounces: database unavailable, try again later: ")


def test_poll_reads_a_maildir_once_and_moves_what_it_read_to_cur(
    site: Site, tmp_path: Path
) -> None:
    box = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    reports = {
        "1.a": fixture("gmail-no-such-account.eml", PATH.address(1, 0), "alice@reader.test"),
        "2.b": fixture("arf-complaint.eml", PATH.address(2, 0), "bea@reader.test"),
        "3.c": fixture("postfix-unknown-user.eml", "bounce+2-0-aaaaaaaaaaaaaaaa@guide.test"),
        "4.d": fixture("postfix-delivered.eml", PATH.address(1, 0)),
    }
    for name, data in reports.items():
        (box / "new" / name).write_bytes(data)
    ran = site.run("bounces", "poll", "--maildir", str(box))
    assert (ran.code, ran.out.strip()) == (0, SUMMARY.format(4, 1, 0, 0, 1, 1, 1))
    assert list((box / "new").iterdir()) == []
    assert sorted(p.name for p in (box / "cur").iterdir()) == [f"{n}:2,S" for n in sorted(reports)]
    assert (status(site, "1"), status(site, "2")) == ("bounced", "unsubscribed")
    # A second poll finds nothing new.
    again = site.run("bounces", "poll", "--maildir", str(box))
    assert (again.code, again.out.strip()) == (0, SUMMARY.format(0, 0, 0, 0, 0, 0, 0))


def test_poll_of_a_folder_that_is_not_a_maildir_says_so(site: Site, tmp_path: Path) -> None:
    ran = site.run("bounces", "poll", "--maildir", str(tmp_path))
    assert ran.code == 1
    assert ran.err.strip() == f"error: not a Maildir (no cur/ folder) ({tmp_path})"
