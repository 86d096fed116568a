"""A representative lesson email, built once, for the raw-transport baselines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# A strong link-signing key: weak ones are refused.
BENCH_SECRET = "DqyJ1Vt0u2r7zUwYpDk4mH8bXfNc6LsGaRe9oTiQ-Ow"  # noqa: S105


def sample_message() -> bytes:
    """Day 3 for a sample reader, exactly as the service would build it."""
    from delivery.message import Recipient
    from guide.config import Config
    from guide.lessons import load_library
    from guide.tokens import LinkSigner
    from wiring import make_composer

    config = Config(lessons_dir=REPO / "lessons", link_secret=BENCH_SECRET)
    sequence = load_library(REPO / "lessons")["no-contact"]
    signer = LinkSigner(BENCH_SECRET, config.web.public_url, config.link_lifetime)
    composer = make_composer(config, signer)
    reader = Recipient("reader@example.org", "Sam", False)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    composed, _ = composer.sample(reader, sequence, sequence.lesson_on_day(3), now)
    return composed.data
