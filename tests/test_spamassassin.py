"""Every message this service sends scores below 1.0 in SpamAssassin's default configuration.

Debian's `spamassassin -L -t` (local tests only) reads every lesson of both sequences in both
modes, the closing email, the confirmation and a send-test sample, unsigned, and one of each
kind DKIM-signed. The messages go in as a few mboxes scored in parallel: SpamAssassin takes a
second to start and about 0.15 s a message after that.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from delivery.transports import MemoryTransport
from guide.config import DKIMConfig
from tests.harness import OTHER_LINK_SECRET, Clock, config_for, make_parts
from tests.messages import START, Built, build_all
from wiring import Parts

LIMIT = 1.0  # the bar: well under the 5.0 that marks spam, with room for a receiver's rules
WORKERS = 2  # the test machines have two cores
_STATUS = re.compile(r"score=(-?[\d.]+) .*?tests=(\S*)", re.S)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """SpamAssassin's score for one message and the report of the rules it hit."""

    score: float
    rules: str
    report: str


def require_spamassassin() -> str:
    """The spamassassin binary, or a visible skip on a developer machine; in CI a failure."""
    binary = shutil.which("spamassassin")
    if binary is None:
        message = "needs Debian's spamassassin (apt-get install spamassassin; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def mbox(messages: Iterable[bytes]) -> bytes:
    """The messages as one mbox, LF line ends, body lines that start with 'From ' quoted."""
    out = []
    for data in messages:
        lines = data.replace(b"\r\n", b"\n")
        out.append(b"From guide@localhost Mon Mar  1 06:00:00 2027\n")
        out.append(re.sub(rb"(?m)^From ", b">From ", lines).rstrip(b"\n") + b"\n\n")
    return b"".join(out)


def score(binary: str, messages: list[bytes], home: Path) -> dict[str, Verdict]:
    """Run `spamassassin -L -t --mbox` over `messages`; each one's verdict by its Message-ID.

    (An mbox run does not keep the order of its messages, so they are told apart by ID.)
    """
    chunks = [messages[i::WORKERS] for i in range(WORKERS)]
    # HOME: SpamAssassin writes a user_prefs file on its first run; it stays in the test's folder.
    env = {**os.environ, "HOME": str(home)}
    runs = [
        subprocess.Popen(
            [binary, "-L", "-t", "--mbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in chunks
    ]
    verdicts: dict[str, Verdict] = {}
    for run, chunk in zip(runs, chunks, strict=True):
        out, err = run.communicate(mbox(chunk), timeout=180)
        assert run.returncode == 0, err.decode(errors="replace")
        for message in re.split(rb"(?m)^From guide@localhost .*\n", out)[1:]:
            verdicts[message_id(message)] = _verdict(message)
    return verdicts


def message_id(data: bytes) -> str:
    """The Message-ID header of message bytes."""
    match = re.search(rb"^Message-ID: (<[^>]+>)\r?$", data, flags=re.M)
    assert match, f"no Message-ID in:\n{data[:2000]!r}"
    return match.group(1).decode()


def _verdict(message: bytes) -> Verdict:
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(message)
    # Unfold the header, and the rule list that folding split after its commas.
    status = re.sub(r",\s+", ",", " ".join(str(parsed["X-Spam-Status"]).split()))
    match = _STATUS.search(status)
    assert match, f"no X-Spam-Status in:\n{message[:2000]!r}"
    text = message.decode("utf-8", errors="replace")
    report = text[text.rfind("Content analysis details") :]
    return Verdict(float(match.group(1)), match.group(2), report)


def dkim_config() -> DKIMConfig:
    """A fresh 2048-bit key for the default sender domain."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DKIMConfig(selector="s2026", domain="localhost", private_key=pem)


async def messages_of(parts: Parts) -> list[Built]:
    """Every message kind of every sequence, built for stored subscribers."""
    try:
        return await build_all(parts)
    finally:
        await parts.close()


def one_of_each(built: list[Built]) -> list[Built]:
    """The first message of each kind, mode and sequence."""
    seen: dict[tuple[str, bool, str], Built] = {}
    for message in built:
        seen.setdefault((message.kind, message.discreet, message.sequence.id), message)
    return list(seen.values())


def control(message: Built) -> bytes:
    """A copy of `message` with the footer wording that scored 1.0, under its own Message-ID."""
    data = message.data.replace(b"Message-ID: <", b"Message-ID: <control.", 1)
    assert b"Stop receiving these emails" in data
    return data.replace(b"Stop receiving these emails", b"Stop these emails")


async def test_every_message_scores_below_one(tmp_path: Path) -> None:
    binary = require_spamassassin()
    plain = await messages_of(
        await make_parts(config_for(tmp_path / "plain"), Clock(START), MemoryTransport())
    )
    # Another link key, so no Message-ID of these repeats one of the unsigned set.
    signing = dataclasses.replace(
        config_for(tmp_path / "dkim"), dkim=dkim_config(), link_secret=OTHER_LINK_SECRET
    )
    signed = one_of_each(
        await messages_of(await make_parts(signing, Clock(START), MemoryTransport()))
    )
    assert all(m.data.startswith(b"DKIM-Signature:") for m in signed)
    assert not any(m.data.startswith(b"DKIM-Signature:") for m in plain)
    checked = [(m.label, m.data) for m in plain] + [
        (f"{m.label}, DKIM-signed", m.data) for m in signed
    ]
    # The check must be able to fail: the old footer wording scores 1.0 (END_FUTURE_EMAILS).
    old_wording = control(plain[0])
    home = tmp_path / "home"
    home.mkdir()
    messages = [old_wording] + [data for _, data in checked]
    assert len({message_id(data) for data in messages}) == len(messages)
    verdicts = score(binary, messages, home)

    assert len(verdicts) == len(messages), "SpamAssassin did not score every message"
    reference = verdicts[message_id(old_wording)]
    assert reference.score >= LIMIT and "END_FUTURE_EMAILS" in reference.rules, reference.report
    failures = [
        f"{label}: {verdict.score} ({verdict.rules})\n{verdict.report}"
        for label, data in checked
        if (verdict := verdicts[message_id(data)]).score >= LIMIT
    ]
    assert not failures, f"{len(failures)} messages score {LIMIT} or more:\n" + "\n".join(
        failures[:10]
    )


def test_mbox_quotes_from_lines() -> None:
    data = b"Subject: x\r\n\r\nFrom here on\r\nnot From\r\n"
    assert mbox([data]).split(b"\n")[1:5] == [b"Subject: x", b"", b">From here on", b"not From"]
