"""`lessons serve` in headless Chromium: an open page follows each save by itself."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Browser

from tests.preview_server import DAY, EDITED, copy_lessons, edit, preview_server
from tests.test_browser import browser, shoot

__all__ = ["browser"]  # the fixture, from the subscriber pages' browser test
FRAME_HEIGHT = "(() => document.querySelector('iframe.email').getBoundingClientRect().height)"


async def test_the_open_page_reloads_itself_after_a_save(tmp_path: Path, browser: Browser) -> None:
    copy_lessons(tmp_path)
    lesson = tmp_path / EDITED
    async with preview_server(tmp_path) as server:
        context = await browser.new_context(viewport={"width": 375, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))

        await page.goto(server.base + "/")
        await page.wait_for_selector("text=All 44 lessons pass")
        await shoot(page, "preview-index")

        await page.goto(server.base + DAY.replace("normal", "discreet"))
        await page.wait_for_selector("[data-live]:has-text('live')")
        await shoot(page, "preview-day-discreet")
        await page.goto(server.base + DAY)
        await page.wait_for_selector("[data-live]:has-text('live')")
        frame = page.frame_locator("iframe.email")
        await frame.locator("h1", has_text="What the month ahead will cover").wait_for()
        # The frame is fitted to the email, so the page scrolls as one.
        await page.wait_for_function(
            "() => document.querySelector('iframe.email').getBoundingClientRect().height > 900"
        )
        # Wider, the email wraps less: the frame shrinks to it rather than leave a gap below.
        narrow = await page.evaluate(f"{FRAME_HEIGHT}()")
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.wait_for_function(f"() => {FRAME_HEIGHT}() < {narrow} - 200")
        await shoot(page, "preview-day")

        # A mark only this page load carries: gone once the page has reloaded itself.
        await page.evaluate("window.notReloaded = true")
        saved = time.monotonic()
        edit(lesson, r"^title: .*$", "title: A calm map of the month")
        await page.locator("h1", has_text="A calm map of the month").wait_for(timeout=10_000)
        took = time.monotonic() - saved
        assert await page.evaluate("window.notReloaded") is None
        await frame.locator("h1", has_text="A calm map of the month").wait_for()
        print(f"the open page showed the edit {took:.2f} s after the save")
        # About 0.8 s on an idle machine (watchfiles' 50 ms, the check, the reload); the bound
        # leaves room for a busy one.
        assert took < 3.0, f"the save took {took:.2f} s to show"

        # A broken save: the checker's lines in place of the email; fixed, the email is back.
        edit(lesson, r"^phase: .*$", "phase: not-a-phase")
        report = page.locator("[data-report]")
        await report.wait_for(timeout=10_000)
        assert f"{EDITED}:5: phase: unknown phase 'not-a-phase'" in await report.inner_text()
        assert await page.locator("iframe.email").count() == 0
        await shoot(page, "preview-broken")
        edit(lesson, r"^phase: .*$", "phase: going-no-contact")
        await frame.locator("h1", has_text="A calm map of the month").wait_for(timeout=10_000)

        await context.close()
        assert await server.stop() == 0
    assert problems == []
