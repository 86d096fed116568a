"""The reader's country on the pages: chosen on sign-up, changed on /manage, in every footer."""

from __future__ import annotations

import pytest

from guide.crisis import ELSEWHERE
from tests.test_web import (
    Site,
    default_site,
    page_of,
    part_text,
    site_factory,
)

__all__ = ["default_site", "site_factory"]

LABEL = "Where you live (for the support lines in each email)"
HOTLINE = "National Domestic Violence Hotline"
TOPIC = ("hotline", "violence", "abuse", "domestic", "refuge", "women")


def footer_of(text: str) -> str:
    """From the footer's first line on, whitespace collapsed."""
    return " ".join(text[text.index("If you need someone to talk to") :].split())


async def test_the_form_offers_each_configured_country_and_somewhere_else(site: Site) -> None:
    page = await page_of(await site.client.get("/subscribe"))
    assert LABEL in site_text(page.html)
    [select] = [a for a in page.all("select") if a.get("name") == "country"]
    assert select.get("id") == "country"
    options = [a for a in page.all("option") if "data-zones" in a or a.get("value") == ELSEWHERE]
    codes = [a.get("value") for a in options]
    assert codes == ["US", "CA", "GB", "IE", "AU", "NZ", ELSEWHERE]
    zones = {a.get("value"): str(a.get("data-zones")).split() for a in options if "data-zones" in a}
    # What site.js matches the browser's timezone against: the tz database's zones.
    assert "America/Chicago" in zones["US"] and zones["IE"] == ["Europe/Dublin"]
    # A page without a subscriber names its lines neutrally.
    footer = footer_of(site_text(page.html)).lower()
    assert [word for word in TOPIC if word in footer] == []
    assert "findahelpline.com" in footer


def site_text(html: str) -> str:
    """The page's HTML with tags left in: labels and footers are matched as text."""
    return " ".join(html.split())


@pytest.mark.parametrize(
    ("posted", "stored"),
    [
        ({"country": "IE"}, "IE"),
        ({"country": ELSEWHERE}, ELSEWHERE),
        # No field at all: the timezone's country (Europe/Berlin → DE, not configured).
        ({}, ELSEWHERE),
        ({"timezone": "Australia/Sydney"}, "AU"),
        ({"timezone": "UTC"}, ""),
    ],
)
async def test_sign_up_stores_the_country(site: Site, posted: dict[str, str], stored: str) -> None:
    status, _ = await site.sign_up("ana@example.org", posted)
    assert status == 200
    [sub] = await site.everyone()
    assert sub.country == stored
    # The confirmation email is discreet whatever the country: no organisation named.
    [opt_in] = site.outbox_for("ana@example.org")
    for subtype in ("plain", "html"):
        footer = footer_of(part_text(opt_in, subtype)).lower()
        assert [word for word in TOPIC if word in footer] == []


@pytest.mark.parametrize("value", ["FR", "us", "x" * 30])
async def test_an_unknown_country_is_refused_with_the_form_again(site: Site, value: str) -> None:
    status, body = await site.sign_up("ana@example.org", {"country": value})
    assert status == 400
    assert "Choose where you live from the list" in body
    assert await site.everyone() == []


async def test_the_lessons_footer_follows_the_country_changed_on_manage(site: Site) -> None:
    status, _ = await site.sign_up("ana@example.org", {"country": "US"})
    assert status == 200
    [sub] = await site.everyone()
    token = site.token("manage", sub.id)
    await site.confirm(f"/confirm/{site.token('confirm', sub.id)}")
    sub = await site.get_subscriber(sub.id)
    assert sub.status == "active"

    page = await page_of(await site.client.get(f"/manage/{token}"))
    [chosen] = [a.get("value") for a in page.all("option") if "selected" in a and "data-zones" in a]
    assert chosen == "US"
    lesson = await site.due_lesson(sub)
    assert HOTLINE in footer_of(part_text(lesson, "plain"))

    form = {"timezone": "Europe/London", "send_time": "07:30", "country": "GB"}
    resp = await site.post(f"/manage/{token}/settings", form)
    assert resp.status == 303
    changed = await site.get_subscriber(sub.id)
    assert changed.country == "GB"
    page = await page_of(await site.client.get(f"/manage/{token}"))
    # The manage page's own footer: the reader's country, in the reader's (normal) mode.
    assert "0808 2000 247" in footer_of(site_text(page.html))
    lesson = await site.due_lesson(changed)
    for subtype in ("plain", "html"):
        footer = footer_of(part_text(lesson, subtype))
        assert "National Domestic Abuse Helpline" in footer and "116 123" in footer
        assert HOTLINE not in footer and "call 999 or 112." in footer

    # Discreet, and somewhere else: the directory only, named neutrally.
    form = {"timezone": "Europe/London", "send_time": "07:30", "country": ELSEWHERE}
    form["discreet"] = "yes"
    assert (await site.post(f"/manage/{token}/settings", form)).status == 303
    lesson = await site.due_lesson(await site.get_subscriber(sub.id))
    footer = footer_of(part_text(lesson, "plain"))
    assert "Helplines in other countries" in footer and "0808" not in footer
    assert "call your local emergency number." in footer


async def test_manage_keeps_the_country_when_the_form_has_none(site: Site) -> None:
    sub = await site.add("ana@example.org", country="NZ")
    token = site.token("manage", sub.id)
    form = {"timezone": "Pacific/Auckland", "send_time": "07:30"}
    assert (await site.post(f"/manage/{token}/settings", form)).status == 303
    assert (await site.get_subscriber(sub.id)).country == "NZ"
    form["country"] = "FR"
    resp = await site.post(f"/manage/{token}/settings", form)
    assert resp.status == 400
    assert (await site.get_subscriber(sub.id)).country == "NZ"


async def test_manage_offers_the_timezone_s_country_to_who_never_chose(site: Site) -> None:
    sub = await site.add("ana@example.org")
    await site.parts.store.change(sub.id, now=site.clock(), actor="test", timezone="Europe/Dublin")
    page = await page_of(await site.client.get(f"/manage/{site.token('manage', sub.id)}"))
    [chosen] = [a.get("value") for a in page.all("option") if "selected" in a and "data-zones" in a]
    assert chosen == "IE"
    # Until they save, the footer stays the default country's (US).
    assert HOTLINE in footer_of(site_text(page.html))
