"""In Chromium: the sign-up form pre-selects the country of the browser's timezone."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from delivery.transports import MemoryTransport
from tests.harness import Clock, config_for, make_parts
from tests.test_browser import browser, free_port, shoot
from web import signup
from web.app import create_app
from wiring import Parts, web_context

__all__ = ["browser"]

Opener = Callable[[str], Awaitable[Page]]


@dataclasses.dataclass
class Site:
    base: str
    parts: Parts


@pytest.fixture(name="site")
async def served_site(tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = config_for(tmp_path)
    config = dataclasses.replace(config, web=dataclasses.replace(config.web, public_url=base))
    parts = await make_parts(
        config, Clock(datetime(2026, 11, 25, 7, 0, tzinfo=UTC)), MemoryTransport()
    )
    runner = web.AppRunner(create_app(web_context(parts)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Site(base, parts)
    finally:
        while signup._background:
            await next(iter(signup._background))
        await runner.cleanup()
        await parts.close()


@pytest.fixture(name="open_form")
async def form_opener(browser: Browser, site: Site) -> AsyncIterator[Opener]:
    contexts = []

    async def open_form(zone: str) -> Page:
        context = await browser.new_context(
            viewport={"width": 375, "height": 900}, timezone_id=zone
        )
        contexts.append(context)
        page = await context.new_page()
        await page.goto(f"{site.base}/subscribe")
        return page

    yield open_form
    for context in contexts:
        await context.close()


@pytest.mark.parametrize(
    ("zone", "country"),
    [
        ("Pacific/Auckland", "NZ"),
        ("America/Denver", "US"),
        ("Europe/Dublin", "IE"),
        ("Europe/Berlin", "other"),
    ],
)
async def test_the_browser_timezone_picks_the_country(
    open_form: Opener, zone: str, country: str
) -> None:
    page = await open_form(zone)
    assert await page.locator("#timezone").input_value() == zone
    assert await page.locator("#country").input_value() == country


async def test_the_reader_s_own_choice_wins_and_is_stored(open_form: Opener, site: Site) -> None:
    page = await open_form("Australia/Sydney")
    await shoot(page, "subscribe-country")
    assert await page.locator("#country").input_value() == "AU"
    # Another timezone moves the country with it, until the reader picks one themselves.
    await page.select_option("#timezone", "America/Toronto")
    assert await page.locator("#country").input_value() == "CA"
    await page.select_option("#country", "GB")
    await page.select_option("#timezone", "Asia/Tokyo")
    assert await page.locator("#country").input_value() == "GB"
    await page.fill("#email", "ana@example.org")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=Check your inbox")
    sub = await site.parts.store.find("ana@example.org")
    assert sub is not None
    assert (sub.timezone, sub.country) == ("Asia/Tokyo", "GB")
