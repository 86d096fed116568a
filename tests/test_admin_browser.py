"""The admin pages in a real browser (Debian's headless Chromium): sign in, look, find, resume."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from delivery.transports import MemoryTransport
from guide.admin_config import AdminConfig
from guide.passwords import hash_password
from guide.records import NewSubscriber
from scheduler import subscribers as life
from tests.harness import Clock, config_for, make_parts, next_due
from tests.test_browser import browser, free_port, shoot
from web.admin.app import create_admin_app
from web.admin.session import SESSION_COOKIE
from wiring import Parts, web_context

__all__ = ["browser"]

PASSWORD = "a long admin passphrase"
READERS = [f"reader{n}@example.org" for n in range(6)]


@dataclass
class Console:
    """The admin pages on a real port, a browser page, and the parts behind them."""

    base: str
    parts: Parts
    clock: Clock
    page: Page


@pytest.fixture
async def console(tmp_path: Path, browser: Browser) -> AsyncIterator[Console]:
    port = free_port()
    config = config_for(tmp_path)
    config = dataclasses.replace(config, admin=AdminConfig(password_hash=hash_password(PASSWORD)))
    clock = Clock(datetime(2026, 11, 20, 5, 0, tzinfo=UTC))
    parts = await make_parts(config, clock, MemoryTransport())
    for address in READERS:
        new = NewSubscriber(
            email=address, sequence_id="no-contact", timezone="Europe/Berlin", send_time="07:30"
        )
        await life.add(parts.store, new, now=clock(), actor="test")
    # A few days of sending, so the chart has bars; the injected clock jumps to each send.
    for _ in range(5):
        due = await next_due(parts)
        assert due is not None
        clock.now = due
        await parts.dispatcher.tick()
    held = await parts.store.find(READERS[0])
    bounced = await parts.store.find(READERS[1])
    assert held is not None and bounced is not None
    reply = f"550 5.7.1 <{READERS[0]}>: message refused by local policy"
    await parts.store.change(
        held.id, now=clock(), actor="dispatch", status="held", last_error=reply
    )
    await parts.store.change(
        bounced.id, now=clock(), actor="dispatch", status="bounced", last_error="550 5.1.1 unknown"
    )
    runner = web.AppRunner(create_admin_app(web_context(parts)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    context = await browser.new_context(viewport={"width": 375, "height": 900})
    try:
        yield Console(f"http://127.0.0.1:{port}", parts, clock, await context.new_page())
    finally:
        await context.close()
        await runner.cleanup()
        await parts.close()


async def test_sign_in_overview_find_resume_and_preview(console: Console) -> None:
    page, base, parts = console.page, console.base, console.parts
    await page.goto(f"{base}/admin/")
    await page.get_by_role("heading", name="Admin sign-in").wait_for()  # sent to the login
    await shoot(page, "admin-login")
    await page.get_by_label("User name").fill("admin")
    await page.get_by_label("Password").fill("not the passphrase")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Wrong user name or password.").wait_for()
    await page.get_by_label("User name").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    [cookie] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.locator("[data-status=held]").inner_text() == "1"
    assert await page.locator("[data-figure=sent-30d]").inner_text() != "0"
    assert await page.locator("figure.chart svg rect").count() == 30
    await shoot(page, "admin-overview")

    await page.get_by_role("link", name="Needs attention").click()
    await page.get_by_role("heading", name="Needs attention").wait_for()
    held_row = page.locator("[data-list=held] tbody tr")
    assert await held_row.count() == 1
    assert "r***@example.org" in await held_row.inner_text()
    assert READERS[0] not in await page.content()  # masked in the reply too
    await shoot(page, "admin-attention")

    await page.get_by_role("link", name="Find").click()
    await page.get_by_label(re.compile("Email address")).fill(READERS[0])
    await page.get_by_role("button", name="Find").click()
    await page.locator("[data-list=found] a").click()
    await page.get_by_role("heading", name=re.compile(r"Subscriber \d+")).wait_for()
    assert await page.locator("[data-fact=address]").inner_text() == READERS[0]
    assert await page.locator("[data-fact=status]").inner_text() == "held"
    assert await page.locator("[data-list=deliveries] tbody tr").count() == 5
    await shoot(page, "admin-subscriber-held")
    await page.get_by_role("button", name="Resume").click()
    await page.get_by_text("Resumed: the next lesson goes").wait_for()
    assert await page.locator("[data-fact=status]").inner_text() == "active"
    sub = await parts.store.find(READERS[0])
    assert sub is not None and sub.status == "active"
    _, events = await parts.store.history(sub.id)
    assert (events[-1]["actor"], events[-1]["new_status"]) == ("admin:admin", "active")
    await shoot(page, "admin-subscriber-resumed")

    await page.get_by_role("link", name="Lessons").click()
    await page.get_by_role("heading", name="Lessons", exact=True).wait_for()
    await shoot(page, "admin-lessons")
    await page.locator('a[href="/admin/lessons/no-contact/2?mode=discreet"]').click()
    await page.get_by_role("heading", name=re.compile("^Day 2: ")).wait_for()
    frame = page.frame_locator("iframe.email")
    await frame.locator("body").wait_for()
    assert "Daily Notes" in await page.locator("[data-fact=from]").inner_text()
    assert len(await frame.locator("body").inner_text()) > 200  # the email itself, rendered
    await shoot(page, "admin-preview-discreet")
    await page.get_by_role("link", name="Plain", exact=True).click()
    await page.locator("strong", has_text="Plain").wait_for()
    assert parts.config.sender.name in await page.locator("[data-fact=from]").inner_text()
    await shoot(page, "admin-preview-plain")

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Admin sign-in").wait_for()
    await page.goto(f"{base}/admin/attention")
    await page.get_by_role("heading", name="Admin sign-in").wait_for()  # signed out for real
