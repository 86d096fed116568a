"""The pages see lesson edits, looking at the files at most once a second (not per request)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import MemoryTransport
from tests.harness import LESSONS, Clock, config_for, make_parts
from web.app import create_app
from web.context import LESSON_CHECK_SECONDS
from wiring import web_context

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


class Seconds:
    """The monotonic seconds the context reads; moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_edited_title_shows_once_the_check_interval_has_passed(tmp_path: Path) -> None:
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS, lessons)
    sequence_file = lessons / "no-contact" / "sequence.yaml"
    old = "Thirty Days of No Contact"
    assert f"title: {old}\n" in sequence_file.read_text(encoding="utf-8")
    parts = await make_parts(config_for(tmp_path, lessons=lessons), Clock(START), MemoryTransport())
    seconds = Seconds()
    context = web_context(parts)
    context.monotonic = seconds
    client = TestClient(TestServer(create_app(context)))
    await client.start_server()
    try:

        async def title_shown() -> str:
            resp = await client.get("/subscribe")
            assert resp.status == 200
            page = await resp.text()
            return "old" if old in page else "new" if "A Renamed Month" in page else "neither"

        assert await title_shown() == "old"
        text = sequence_file.read_text(encoding="utf-8")
        sequence_file.write_text(text.replace(old, "A Renamed Month"), encoding="utf-8")
        seconds.now += LESSON_CHECK_SECONDS / 2
        assert await title_shown() == "old"  # not looked at again within the interval
        seconds.now += LESSON_CHECK_SECONDS / 2
        assert await title_shown() == "new"
    finally:
        await client.close()
        await parts.close()
