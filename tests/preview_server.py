"""`lessons serve` started as a real process on a copy of the lessons, for the preview tests."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.harness import LESSONS, REPO, clean_env

# The lesson the tests edit: day 3 of no-contact.
EDITED = Path("lessons") / "no-contact" / "the-month-ahead.yaml"
DAY = "/no-contact/3/normal"


@dataclass
class Running:
    """A running `lessons serve`: its base URL, its process and what it printed."""

    base: str
    process: asyncio.subprocess.Process
    output: list[str]
    folder: Path

    async def get(self, path: str) -> tuple[int, str]:
        """Fetch `path`: status and body."""
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as response:
            return response.status, await response.text()

    async def text(self, path: str) -> str:
        """Fetch `path`: the body."""
        return (await self.get(path))[1]

    async def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), 15)
        self.output.append(rest.decode())
        return await asyncio.wait_for(self.process.wait(), 15)


def copy_lessons(folder: Path) -> None:
    """The shipped lessons and a config.yaml that points at the copy, in `folder`."""
    shutil.copytree(LESSONS, folder / "lessons", ignore=shutil.ignore_patterns("README.md"))
    (folder / "config.yaml").write_text(
        f"state_dir: {folder / 'state'}\nlessons:\n  dir: {folder / 'lessons'}\n"
    )


def command(folder: Path, *args: str) -> list[str]:
    """`run.py --config folder/config.yaml ARGS`."""
    return [sys.executable, str(REPO / "run.py"), "--config", str(folder / "config.yaml"), *args]


@asynccontextmanager
async def preview_server(folder: Path, *args: str) -> AsyncIterator[Running]:
    """`lessons serve --port 0 ARGS` in `folder` (copy_lessons first), until the block ends."""
    process = await asyncio.create_subprocess_exec(
        *command(folder, "lessons", "serve", "--port", "0", *args),
        cwd=folder,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        line = await asyncio.wait_for(read_until(process.stdout, "previewing ", output), 30)
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        yield Running(f"http://127.0.0.1:{found[1]}", process, output, folder)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    """Read lines until one contains `needle`; that line."""
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"process ended before {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line


async def poll(fetch: Callable[[], Awaitable[str]], needle: str, bound: float = 10.0) -> float:
    """Fetch until the text holds `needle` (HTML unescaped); the seconds it took."""
    start = time.monotonic()
    text = ""
    while time.monotonic() - start < bound:
        text = html.unescape(await fetch())
        if needle in text:
            return time.monotonic() - start
        await asyncio.sleep(0.05)  # the polling interval, not a wait for anything
    raise AssertionError(f"{needle!r} not served within {bound} s; last:\n{text[:3000]}")


def edit(path: Path, pattern: str, replacement: str) -> None:
    """Replace one line matching `pattern` in place, as an editor saves the file."""
    text = path.read_text()
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    path.write_text(new)
