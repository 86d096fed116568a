"""A representative lesson email, built once, for the raw-transport baselines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sample_message() -> bytes:
    """Day 3 for a sample reader, exactly as the service would build it."""
    from guide.config import Config
    from guide.lessons import load_library
    from guide.tokens import LinkSigner
    from scheduler.lesson_commands import render_sample

    config = Config(lessons_dir=REPO / "lessons", link_secret="bench-secret")
    sequence = load_library(REPO / "lessons")["no-contact"]
    signer = LinkSigner("bench-secret", config.web.public_url, config.link_lifetime)
    return render_sample(config, sequence, 3, signer, now=datetime(2026, 6, 1, tzinfo=UTC)).data
