"""A real browser (Debian's headless Chromium via Playwright) through the subscriber journey."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from delivery.transports import MemoryTransport
from tests.harness import Clock, config_for, make_parts
from web import signup
from web.app import create_app
from wiring import Parts, web_context

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# As the platform notes say: without these, Chromium tries to reach Google's hosts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_chromium() -> None:
    """Debian's chromium, or a visible skip on a developer machine; in CI a failure."""
    if not os.path.exists(CHROMIUM):
        message = f"the browser test needs {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Page, name: str) -> None:
    """Screenshots at phone and desktop widths, kept as test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (375, 1280):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": 375, "height": 900})


async def status_of(parts: Parts, address: str) -> str:
    sub = await parts.store.find(address)
    assert sub is not None
    return sub.status


@dataclasses.dataclass
class Served:
    """The service's pages on a real port, with its parts, outbox and clock."""

    base: str
    parts: Parts
    transport: MemoryTransport
    clock: Clock
    page: Page


@pytest.fixture
async def served(tmp_path: Path, browser: Browser) -> AsyncIterator[Served]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = config_for(tmp_path)
    config = dataclasses.replace(
        config,
        web=dataclasses.replace(config.web, public_url=base, quick_exit_url=f"{base}/healthz"),
    )
    transport = MemoryTransport()
    clock = Clock(datetime(2026, 11, 25, 7, 0, tzinfo=UTC))
    parts = await make_parts(config, clock, transport)
    await parts.dispatcher.tick()  # so /healthz (the quick-exit target here) answers 200
    runner = web.AppRunner(create_app(web_context(parts)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    context = await browser.new_context(
        viewport={"width": 375, "height": 900}, timezone_id="Europe/Berlin"
    )
    try:
        yield Served(base, parts, transport, clock, await context.new_page())
    finally:
        await context.close()
        await runner.cleanup()
        await parts.close()


def confirm_link(served: Served, index: int) -> str:
    """The confirmation link in the outbox's message number `index`."""
    mail = BytesParser(policy=policy.default).parsebytes(served.transport.outbox[index].data)
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(rf"{re.escape(served.base)}/confirm/\S+", text)
    assert match, text
    return match.group(0)


async def test_subscribe_confirm_pause_resume_unsubscribe(served: Served) -> None:
    base, parts, transport, page = served.base, served.parts, served.transport, served.page
    await page.goto(f"{base}/subscribe")
    assert await page.get_attribute("html", "lang") == "en"
    # The browser's own timezone was filled in by the page's script.
    assert await page.input_value("#timezone") == "Europe/Berlin"
    await shoot(page, "subscribe")
    await page.get_by_label("Email address").fill("reader@example.org")
    await page.get_by_label("First name").fill("Sam")
    await page.get_by_label("Time of day to receive it").fill("07:30")
    # Privacy is the default: the reader does not have to find the box to be discreet.
    assert await page.get_by_label(re.compile("Discreet mode")).is_checked()
    # Keyboard-usable: the submit button is reachable and works with Enter.
    await page.get_by_role("button", name="Subscribe").focus()
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Check your inbox").wait_for()
    await shoot(page, "check-inbox")
    for task in list(signup._background):
        await task
    assert await status_of(parts, "reader@example.org") == "pending"

    assert len(transport.outbox) == 1
    mail = BytesParser(policy=policy.default).parsebytes(transport.outbox[0].data)
    assert "Daily Notes" in str(mail["From"])  # the confirmation email is always discreet
    await page.goto(confirm_link(served, 0))
    # Opening the link changes nothing (mail scanners open links); the button confirms.
    await page.get_by_role("heading", name="Confirm your daily emails").wait_for()
    await page.get_by_text("Discreet mode is on").wait_for()
    assert await status_of(parts, "reader@example.org") == "pending"
    await shoot(page, "confirm")
    await page.get_by_role("button", name="Start my emails").click()
    await page.get_by_role("heading", name="You're subscribed").wait_for()
    assert await status_of(parts, "reader@example.org") == "active"
    await shoot(page, "confirmed")

    await page.get_by_role("link", name="Manage my emails").click()
    await page.get_by_role("heading", name="Your emails").wait_for()
    await shoot(page, "manage")
    await page.get_by_role("button", name="Pause my emails").click()
    await page.get_by_text("Your emails are paused").wait_for()
    assert await status_of(parts, "reader@example.org") == "paused"
    await shoot(page, "paused")
    await page.get_by_role("button", name="Resume my emails").click()
    await page.get_by_text("Your emails will start again").wait_for()
    assert await status_of(parts, "reader@example.org") == "active"

    await page.get_by_role("button", name="Leave").click()
    await page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert await status_of(parts, "reader@example.org") == "unsubscribed"
    await shoot(page, "unsubscribed")

    # Quick exit replaces this page in the history: Back does not return to it.
    await page.goto(f"{base}/subscribe")
    await page.goto(f"{base}/subscribe?again=1")
    await page.get_by_role("link", name=re.compile("Quick exit")).click()
    await page.wait_for_url(f"{base}/healthz")
    await page.go_back()
    assert page.url == f"{base}/subscribe"


async def test_subscribe_to_the_second_sequence_then_switch(served: Served) -> None:
    parts, page = served.parts, served.page
    library = parts.library.current()
    await page.goto(f"{served.base}/subscribe")
    assert await page.get_by_label(re.compile(library["no-contact"].title)).is_checked()
    await page.get_by_label(re.compile(library["low-contact"].title)).check()
    await shoot(page, "subscribe-choice")
    await page.get_by_label("Email address").fill("second@example.org")
    await page.get_by_label("Time of day to receive it").fill("07:30")
    await page.get_by_role("button", name="Subscribe").click()
    await page.get_by_role("heading", name="Check your inbox").wait_for()
    for task in list(signup._background):
        await task
    await page.goto(confirm_link(served, 0))
    await page.get_by_role("button", name="Start my emails").click()
    await page.get_by_role("heading", name="You're subscribed").wait_for()
    sub = await parts.store.find("second@example.org")
    assert sub is not None and (sub.sequence_id, sub.status) == ("low-contact", "active")
    assert sub.discreet  # the form's default, left as it was

    # One lesson of the second sequence arrives, then the reader switches.
    assert sub.next_due_at is not None
    served.clock.now = sub.next_due_at
    assert (await parts.dispatcher.tick()).results["sent"] == 1
    await page.get_by_role("link", name="Manage my emails").click()
    await page.get_by_role("heading", name="Your emails").wait_for()
    await page.get_by_text("Progress: 1 of 14 lessons received.").wait_for()
    await page.get_by_label(re.compile(library["no-contact"].title)).check()
    await page.get_by_role("button", name="Switch readings").click()
    await page.get_by_text("Your readings are changed").wait_for()
    await page.get_by_text("Progress: 0 of 30 lessons received.").wait_for()
    await page.get_by_text("You have received 1.").wait_for()  # the other sequence's, kept
    assert await page.get_by_label(re.compile(library["no-contact"].title)).is_checked()
    await shoot(page, "switched")
    switched = await parts.store.find("second@example.org")
    assert switched is not None
    assert (switched.sequence_id, switched.generation) == ("no-contact", sub.generation)
    recorded = (await parts.store.progress([sub.id]))[sub.id]
    assert recorded == [library["low-contact"].order[0]]
