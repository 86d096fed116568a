"""The subscriber pages and operator endpoints over HTTP, on a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import MemoryTransport, SendResult, Status
from guide.errors import TransportConfigError
from guide.lessons import Sequence
from guide.records import NewSubscriber, Subscriber
from scheduler import subscribers as life
from scheduler.schedule import next_send_time, parse_send_time
from tests.harness import Clock, config_for, make_parts
from web import account, signup
from web.app import create_app
from web.csrf import CSRF_COOKIE
from wiring import Parts, web_context

# A Monday in March: Europe/Berlin is UTC+1, New York UTC-5 (its DST starts on the 8th).
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
PUBLIC = "http://127.0.0.1:8080"  # config_for's web.public_url: the links in emails
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')
NAME = "Zebedee"  # distinctive, so a page that leaks it is caught
TOPIC_WORDS = ("abuse", "recover", "no contact", "no-contact", "narciss", "survivor", "thirty days")
OTHER = "low-contact"  # the second shipped sequence; the default is no-contact


class Switch:
    """The scheduler_running callable, settable by a test."""

    def __init__(self) -> None:
        self.on = True

    def __call__(self) -> bool:
        return self.on


@dataclass
class Site:
    """The web app on a fresh state directory, with the clock at START."""

    parts: Parts
    clock: Clock
    transport: MemoryTransport
    client: TestClient[web.Request, web.Application]
    scheduler: Switch

    @property
    def sequence(self) -> Sequence:
        return self.parts.library.current()[self.parts.config.default_sequence]

    def token(self, purpose: str, payload: object) -> str:
        return self.parts.signer.token(purpose, payload, self.clock())

    async def get_subscriber(self, subscriber_id: int) -> Subscriber:
        sub = await self.parts.store.get(subscriber_id)
        assert sub is not None
        return sub

    async def everyone(self) -> list[Subscriber]:
        return [sub async for sub in self.parts.store.iterate()]

    async def add(
        self, address: str, *, status: str = "active", sequence_id: str = "", **extra: Any
    ) -> Subscriber:
        """A subscriber added directly, as the CLI would (not through the pages)."""
        new = NewSubscriber(
            email=address,
            sequence_id=sequence_id or self.parts.config.default_sequence,
            timezone="Europe/Berlin",
            send_time="07:30",
            name=NAME,
            **extra,
        )
        sub, created = await life.add(
            self.parts.store, new, now=self.clock(), actor="test", status=status
        )
        assert created
        return sub

    async def csrf(self) -> str:
        """This client's CSRF token, read from the sign-up form (which sets the cookie)."""
        resp = await self.client.get("/subscribe")
        assert resp.status == 200
        match = CSRF_FIELD.search(await resp.text())
        assert match, "the form has no CSRF field"
        return match.group(1)

    async def sign_up(
        self,
        address: str,
        fields: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST the sign-up form with this client's CSRF token; wait for the opt-in send."""
        data = {
            "csrf": await self.csrf(),
            "email": address,
            "name": NAME,
            "timezone": "Europe/Berlin",
            "send_time": "07:30",
            **(fields or {}),
        }
        resp = await self.client.post("/subscribe", data=data, headers=headers)
        body = await resp.text()
        await drain()
        return resp.status, body

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> ClientResponse:
        """A form POST without following redirects; with this client's CSRF token if asked."""
        form = dict(data or {})
        if csrf:
            form["csrf"] = await self.csrf()
        return await self.client.post(path, data=form, allow_redirects=False)

    async def confirm(self, path: str) -> ClientResponse:
        """Open a confirmation link, then press the page's button, as a reader would."""
        page = await self.client.get(path)
        assert page.status == 200, await page.text()
        match = CSRF_FIELD.search(await page.text())
        if match is None:  # already confirmed: the page says so and has no button
            return page
        return await self.client.post(path, data={"csrf": match.group(1)}, allow_redirects=False)

    def outbox_for(self, address: str) -> list[EmailMessage]:
        return [parse(e.data) for e in self.transport.outbox if e.recipient == address]

    async def due_lesson(self, sub: Subscriber) -> EmailMessage:
        """Move the clock to `sub`'s send time, run one dispatch pass, return the lesson sent."""
        sub = await self.get_subscriber(sub.id)
        assert sub.next_due_at is not None
        self.clock.now = sub.next_due_at
        before = len(self.outbox_for(sub.email or ""))
        report = await self.parts.dispatcher.tick()
        assert report.results["sent"] == 1
        sent = self.outbox_for(sub.email or "")
        assert len(sent) == before + 1
        return sent[-1]


class SiteFactory(Protocol):
    async def __call__(self, **web_settings: Any) -> Site: ...


@pytest.fixture(name="make_site")
async def site_factory(tmp_path: Path) -> AsyncIterator[SiteFactory]:
    opened: list[Site] = []

    async def make(**web_settings: Any) -> Site:
        config = config_for(tmp_path / f"site{len(opened)}")
        if web_settings:
            # Built before make_parts: the rate limits are read when the app is made.
            config = dataclasses.replace(
                config, web=dataclasses.replace(config.web, **web_settings)
            )
        clock = Clock(START)
        transport = MemoryTransport()
        parts = await make_parts(config, clock, transport)
        switch = Switch()
        client = TestClient(TestServer(create_app(web_context(parts, scheduler_running=switch))))
        await client.start_server()
        site = Site(parts, clock, transport, client, switch)
        opened.append(site)
        return site

    yield make
    await drain()
    for site in opened:
        await site.client.close()
        await site.parts.close()


@pytest.fixture(name="site")
async def default_site(make_site: SiteFactory) -> Site:
    return await make_site()


async def drain() -> None:
    """Wait for the confirmation emails the sign-up handler sends in the background."""
    while signup._background:
        await asyncio.gather(*list(signup._background))


def parse(data: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(data)


def part_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def link_path(text: str, route: str) -> str:
    """The path of the one `{PUBLIC}/{route}/<token>` link in `text`."""
    found = {str(m) for m in re.findall(re.escape(PUBLIC) + rf"(/{route}/[A-Za-z0-9_.-]+)", text)}
    assert len(found) == 1, f"expected one /{route}/ link, found {found}"
    return found.pop()


def tampered(token: str) -> str:
    """The token with one signature character changed (not the last: its low bits are padding)."""
    payload, stamp, signature = token.rsplit(".", 2)
    swapped = "B" if signature[5] != "B" else "C"
    return f"{payload}.{stamp}.{signature[:5]}{swapped}{signature[6:]}"


def normalized(body: str) -> str:
    return CSRF_FIELD.sub('name="csrf" value=""', body)


class Page(HTMLParser):
    """Start tags with their attributes, and the text of each heading, paragraph and list item."""

    BLOCKS = ("h1", "h2", "p", "li")

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.BLOCKS:
            self._open.append((tag, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS and self._open and self._open[-1][0] == tag:
            name, pieces = self._open.pop()
            self.blocks.append((name, " ".join("".join(pieces).split())))

    def handle_data(self, data: str) -> None:
        for _, pieces in self._open:
            pieces.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def texts(self, tag: str) -> list[str]:
        return [text for name, text in self.blocks if name == tag]

    def forms(self) -> dict[str, str]:
        """Form action → method."""
        return {str(a.get("action")): str(a.get("method")) for a in self.all("form")}

    def quick_exits(self) -> list[str]:
        return [str(a.get("href")) for a in self.all("a") if "data-quick-exit" in a]


async def page_of(resp: ClientResponse) -> Page:
    return Page(await resp.text())


def assert_plain_error(site: Site, page: Page, status: int, address: str) -> None:
    """A bad link's page: the expected heading, a quick exit, and nothing about anyone."""
    heading = {400: "This link is not valid", 410: "This link has expired"}[status]
    assert page.texts("h1") == [heading]
    assert page.quick_exits() == [site.parts.config.web.quick_exit_url]
    for secret in ("Traceback", "Error", address, NAME, "Europe/Berlin", "07:30"):
        assert secret not in page.html


def metric(text: str, name: str) -> float:
    """The value of one sample line of the Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in:\n{text}")


# -- the sign-up form -------------------------------------------------------------------------


async def test_subscribe_form_is_accessible_private_and_self_contained(site: Site) -> None:
    resp = await site.client.get("/subscribe")
    assert resp.status == 200
    page = await page_of(resp)
    config = site.parts.config
    assert page.all("html") == [{"lang": "en"}]

    labels = {a.get("for") for a in page.all("label")}
    fields = [a for a in page.all("input") if a.get("type") != "hidden"] + page.all("select")
    assert {a.get("name") for a in fields} >= {"email", "name", "timezone", "send_time", "discreet"}
    for attrs in fields:
        assert attrs.get("id") in labels, f"field {attrs.get('name')} has no <label for>"

    assert page.quick_exits() == [config.web.quick_exit_url]
    footers = config.footer.crisis_footers()
    shown = footers.footer("", True).lines  # a page without a subscriber: neutral labels
    allowed = {config.web.quick_exit_url} | {line.url for line in shown if line.url}
    for _, attrs in page.tags:
        for key in ("src", "href", "action"):
            value = attrs.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                assert value in allowed, f"third-party {key}: {value}"
    scripts = [str(a.get("src")) for a in page.all("script")]
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert "<img" not in page.html
    for tracker in ("analytics", "gtag", "googletagmanager", "plausible", "matomo"):
        assert tracker not in page.html.replace("uses no analytics", "")

    cookies = resp.headers.getall("Set-Cookie", [])
    assert len(cookies) == 1
    attributes = [a.strip().lower() for a in cookies[0].split(";")]
    assert attributes[0].startswith(f"{CSRF_COOKIE}=")
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "secure" not in attributes  # public_url is http here; see the https test

    headers = resp.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"

    again = await site.client.get("/subscribe")  # the browser now has the cookie
    assert again.headers.getall("Set-Cookie", []) == []


async def test_csrf_cookie_is_secure_behind_https(make_site: SiteFactory) -> None:
    site = await make_site(public_url="https://guide.example.org")
    resp = await site.client.get("/subscribe")
    [cookie] = resp.headers.getall("Set-Cookie", [])
    assert "secure" in [a.strip().lower() for a in cookie.split(";")]


async def test_timezone_is_a_plain_select_that_works_without_javascript(site: Site) -> None:
    page = await page_of(await site.client.get("/subscribe"))
    [select] = [a for a in page.all("select") if a.get("name") == "timezone"]
    assert select.get("id") == "timezone"
    options = page.all("option")
    values = {a.get("value") for a in options}
    assert {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} <= values
    # The timezone's, then the country's: the default country until a script or the reader
    # picks another.
    assert [a.get("value") for a in options if "selected" in a] == ["UTC", "US"]
    # Submitted as chosen from the list, with no script involved.
    status, _ = await site.sign_up("tz@example.org", {"timezone": "Asia/Kolkata"})
    assert status == 200
    [sub] = await site.everyone()
    assert sub.timezone == "Asia/Kolkata"


async def test_front_page_redirects_to_the_form(site: Site) -> None:
    resp = await site.client.get("/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/subscribe"
    # Redirects raised as exceptions still carry the security headers.
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"


# -- signing up -------------------------------------------------------------------------------


async def test_sign_up_creates_a_pending_subscriber_and_sends_one_opt_in(site: Site) -> None:
    status, body = await site.sign_up("Ana@Example.org")
    assert status == 200
    assert "Check your inbox" in body
    [sub] = await site.everyone()
    assert (sub.email, sub.name, sub.timezone, sub.send_time) == (
        "ana@example.org",
        NAME,
        "Europe/Berlin",
        "07:30",
    )
    assert sub.status == "pending"
    assert sub.next_due_at is None
    assert sub.discreet is False

    assert [e.recipient for e in site.transport.outbox] == ["ana@example.org"]
    message = parse(site.transport.outbox[0].data)
    # The one email before consent is always discreet: the form's author may not own the inbox.
    assert message["From"].addresses[0].display_name == site.parts.config.sender.discreet_name
    assert "No Contact" not in str(message["Subject"])
    assert "No Contact" not in part_text(message, "plain")
    path = link_path(part_text(message, "plain"), "confirm")
    assert path == link_path(part_text(message, "html"), "confirm")
    token = path.removeprefix("/confirm/")
    assert site.parts.signer.load("confirm", token, site.clock()) == sub.id
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_discreet_opt_in_names_nothing_about_the_topic(site: Site) -> None:
    status, _ = await site.sign_up("quiet@example.org", {"discreet": "yes"})
    assert status == 200
    [sub] = await site.everyone()
    assert sub.discreet is True
    [message] = site.outbox_for("quiet@example.org")
    sender = site.parts.config.sender
    assert message["From"].addresses[0].display_name == sender.discreet_name
    subject = str(message["Subject"])
    assert subject
    for word in (*TOPIC_WORDS, site.sequence.title.lower(), sender.name.lower()):
        assert word not in subject.lower(), f"discreet subject {subject!r} says {word!r}"
    link_path(part_text(message, "plain"), "confirm")


@pytest.mark.parametrize(
    "csrf",
    [None, "", "x" * 43, "wrong-length"],
    ids=["no-field", "empty", "wrong-token", "short-token"],
)
async def test_sign_up_without_the_right_csrf_token_is_refused(
    site: Site, csrf: str | None
) -> None:
    await site.csrf()  # the browser has a cookie; the form does not carry its token
    data = {"email": "ana@example.org", "timezone": "UTC", "send_time": "08:00"}
    if csrf is not None:
        data["csrf"] = csrf
    resp = await site.client.post("/subscribe", data=data)
    assert resp.status == 403
    await drain()
    assert await site.everyone() == []
    assert site.transport.outbox == []


@pytest.mark.parametrize("csrf", [None, "", "a" * 43], ids=["no-field", "empty", "any-token"])
async def test_sign_up_without_a_cookie_is_refused(site: Site, csrf: str | None) -> None:
    # A cross-site POST: the attacker can put anything in the form but has no cookie.
    data = {"email": "ana@example.org", "timezone": "UTC", "send_time": "08:00"}
    if csrf is not None:
        data["csrf"] = csrf
    assert len(site.client.session.cookie_jar) == 0
    resp = await site.client.post("/subscribe", data=data)
    assert resp.status == 403
    assert (await page_of(resp)).texts("h1") == ["Please try again"]
    await drain()
    assert await site.everyone() == []
    assert site.transport.outbox == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-address", "Enter an email address"),
        ("email", '"><script>alert(1)</script>', "Enter an email address"),
        ("timezone", "Mars/Olympus_Mons", "Choose your timezone from the list."),
        ("send_time", "25:00", "Enter a time like 08:30."),
        ("send_time", "", "Enter a time like 08:30."),
    ],
)
async def test_invalid_sign_up_is_shown_again_with_the_errors(
    site: Site, field: str, value: str, message: str
) -> None:
    status, body = await site.sign_up("ana@example.org", {field: value})
    assert status == 400
    page = Page(body)
    [alert] = [a for a in page.all("div") if a.get("role") == "alert"]
    assert alert.get("id") == "form-errors"
    assert message in body
    assert f'href="#{field}"' in body  # the error links to its field
    assert "<script>alert" not in body  # what was typed is escaped
    assert page.forms() == {"/subscribe": "post"}
    if field != "email":
        assert 'value="ana@example.org"' in body  # what was typed is kept
    assert await site.everyone() == []
    assert site.transport.outbox == []


async def test_known_and_unknown_addresses_get_the_same_answer(site: Site) -> None:
    await site.add("active@example.org")
    status, _ = await site.sign_up("pending@example.org")
    assert status == 200
    answers = {}
    for address in ("new@example.org", "pending@example.org", "active@example.org"):
        resp = await site.client.post(
            "/subscribe",
            data={
                "csrf": await site.csrf(),
                "email": address,
                "timezone": "UTC",
                "send_time": "08:00",
            },
        )
        cookies = tuple(resp.headers.getall("Set-Cookie", []))
        answers[address] = (resp.status, normalized(await resp.text()), cookies)
    await drain()
    assert len(set(answers.values())) == 1, "the answer tells which addresses are known"
    assert answers["new@example.org"][0] == 200
    recipients = [e.recipient for e in site.transport.outbox]
    assert recipients.count("new@example.org") == 1
    assert recipients.count("pending@example.org") == 2  # a new link for a second sign-up
    assert "active@example.org" not in recipients
    active = [s for s in await site.everyone() if s.email == "active@example.org"]
    assert [s.status for s in active] == ["active"]
    # A second sign-up while pending keeps the latest choices.
    [pending] = [s for s in await site.everyone() if s.email == "pending@example.org"]
    assert (pending.status, pending.timezone, pending.send_time) == ("pending", "UTC", "08:00")


async def test_client_rate_limit(make_site: SiteFactory) -> None:
    site = await make_site(client_limit_per_hour=3)
    assert (await site.sign_up("one@example.org"))[0] == 200
    assert (await site.sign_up("bad address"))[0] == 400  # every attempt counts
    assert (await site.sign_up("two@example.org"))[0] == 200
    status, body = await site.sign_up("three@example.org")
    assert status == 429
    assert "too many sign-up attempts" in body
    assert sorted(str(s.email) for s in await site.everyone()) == [
        "one@example.org",
        "two@example.org",
    ]
    assert len(site.transport.outbox) == 2
    site.clock.advance(timedelta(hours=1))  # the window slides on the injected clock
    assert (await site.sign_up("three@example.org"))[0] == 200


async def test_forwarded_for_is_ignored_unless_trusted(make_site: SiteFactory) -> None:
    site = await make_site(client_limit_per_hour=3)
    for n in range(3):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert (await site.sign_up(f"p{n}@example.org", headers=headers))[0] == 200
    # A fresh X-Forwarded-For does not make a fresh client.
    headers = {"X-Forwarded-For": "198.51.100.7"}
    assert (await site.sign_up("p3@example.org", headers=headers))[0] == 429


async def test_forwarded_for_is_used_when_trusted(make_site: SiteFactory) -> None:
    site = await make_site(client_limit_per_hour=3, trust_forwarded_for=True)
    first = {"X-Forwarded-For": "203.0.113.1"}
    for n in range(3):
        assert (await site.sign_up(f"p{n}@example.org", headers=first))[0] == 200
    assert (await site.sign_up("p3@example.org", headers=first))[0] == 429
    # The proxy appends the client it saw: the last entry is the one to trust.
    second = {"X-Forwarded-For": "203.0.113.1, 203.0.113.2"}
    assert (await site.sign_up("p3@example.org", headers=second))[0] == 200


async def test_address_limit_stops_the_emails_but_not_the_answer(site: Site) -> None:
    limit = site.parts.config.web.address_limit_per_day
    answers = set()
    for n in range(limit + 2):
        address = "ana@example.org" if n % 2 else "ANA@example.org"
        status, body = await site.sign_up(address)
        answers.add((status, normalized(body)))
    assert len(answers) == 1
    assert len(site.outbox_for("ana@example.org")) == limit
    assert len(site.transport.outbox) == limit
    site.clock.advance(timedelta(days=1))
    await site.sign_up("ana@example.org")
    assert len(site.outbox_for("ana@example.org")) == limit + 1


async def test_unconfirmed_sign_ups_are_purged_and_active_ones_kept(site: Site) -> None:
    await site.sign_up("old@example.org")
    await site.add("active@example.org")
    site.clock.advance(timedelta(days=site.parts.config.web.pending_days, hours=1))
    await site.sign_up("fresh@example.org")
    cutoff = site.clock() - timedelta(days=site.parts.config.web.pending_days)
    assert await site.parts.store.purge_pending(cutoff) == 1
    remaining = {str(s.email): s.status for s in await site.everyone()}
    assert remaining == {"active@example.org": "active", "fresh@example.org": "pending"}


async def test_a_second_sign_up_restarts_the_pending_period(site: Site) -> None:
    pending_days = site.parts.config.web.pending_days
    await site.sign_up("ana@example.org")
    site.clock.advance(timedelta(days=pending_days - 1))
    await site.sign_up("ana@example.org")
    second = site.outbox_for("ana@example.org")[-1]
    site.clock.advance(timedelta(days=2))
    # The second email's link is two days old; the purge must not have removed its sign-up.
    cutoff = site.clock() - timedelta(days=pending_days)
    assert await site.parts.store.purge_pending(cutoff) == 0
    resp = await site.confirm(link_path(part_text(second, "plain"), "confirm"))
    assert resp.status == 200
    [sub] = await site.everyone()
    assert sub.status == "active"


# -- confirming -------------------------------------------------------------------------------


async def test_confirm_activates_once_and_links_to_manage(site: Site) -> None:
    await site.sign_up("ana@example.org")
    [message] = site.outbox_for("ana@example.org")
    path = link_path(part_text(message, "plain"), "confirm")
    site.clock.advance(timedelta(hours=2))
    confirmed_at = site.clock()

    resp = await site.confirm(path)
    assert resp.status == 200
    page = await page_of(resp)
    assert page.texts("h1") == ["You're subscribed"]
    [sub] = await site.everyone()
    assert sub.status == "active"
    assert sub.confirmed_at == confirmed_at
    expected = next_send_time(
        tz=ZoneInfo("Europe/Berlin"),
        send_time=parse_send_time("07:30"),
        now=confirmed_at,
        last_sent_at=None,
    )
    assert sub.next_due_at == expected == datetime(2026, 3, 3, 6, 30, tzinfo=UTC)
    assert "Tuesday 3 March at 07:30 (Europe/Berlin time)" in page.html

    [manage_url] = [str(a["href"]) for a in page.all("a") if a.get("class") == "button"]
    assert manage_url.startswith(PUBLIC + "/manage/")
    manage = await site.client.get(urlsplit(manage_url).path)
    assert manage.status == 200
    assert "receiving emails" in await manage.text()

    site.clock.advance(timedelta(hours=1))
    again = await site.client.get(path)
    assert again.status == 200
    assert await site.get_subscriber(sub.id) == sub  # nothing changed, not even updated_at
    assert len(site.transport.outbox) == 1  # and nothing more was sent


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_opening_the_confirm_link_changes_nothing(site: Site, method: str) -> None:
    # Mail security scanners fetch every link: a sign-up someone else made for this address
    # must not start because the reader's mail gateway opened the email.
    await site.sign_up("ana@example.org", {"discreet": "yes", "send_time": "06:45"})
    path = link_path(part_text(site.outbox_for("ana@example.org")[0], "plain"), "confirm")
    before = await site.everyone()
    for _ in range(3):
        site.clock.advance(timedelta(minutes=5))
        resp = await site.client.request(method, path, allow_redirects=False)
        assert resp.status == 200
    assert await site.everyone() == before
    assert len(site.transport.outbox) == 1

    page = await page_of(await site.client.get(path))
    assert page.forms() == {path: "post"}
    assert page.texts("h1") == ["Confirm your daily emails"]
    # The reader sees what the form-filler chose before saying yes to it.
    text = " ".join(page.texts("p"))
    assert "06:45 (Europe/Berlin time)" in text
    assert "Discreet mode is on" in text
    assert await site.everyone() == before


async def test_confirm_needs_this_browsers_csrf_token(site: Site) -> None:
    await site.sign_up("ana@example.org")
    path = link_path(part_text(site.outbox_for("ana@example.org")[0], "plain"), "confirm")
    before = await site.everyone()
    for form in ({}, {"csrf": "x" * 43}):
        resp = await site.client.post(path, data=form, allow_redirects=False)
        assert resp.status == 403
        assert "Please try again" in await resp.text()
    # Without the cookie (a form on another site) even a real token is refused.
    token = await site.csrf()
    site.client.session.cookie_jar.clear()
    resp = await site.client.post(path, data={"csrf": token}, allow_redirects=False)
    assert resp.status == 403
    assert await site.everyone() == before
    resp = await site.confirm(path)
    assert resp.status == 200
    assert [s.status for s in await site.everyone()] == ["active"]


async def test_sign_up_form_starts_discreet_unless_the_operator_says_otherwise(
    make_site: SiteFactory,
) -> None:
    def ticked(page: Page) -> bool:
        [box] = [a for a in page.all("input") if a.get("name") == "discreet"]
        return "checked" in box

    default = await make_site()
    assert ticked(await page_of(await default.client.get("/subscribe")))
    # The box's state is what gets stored: a default form, posted as it is, is discreet.
    await default.sign_up("ana@example.org", {"discreet": "yes"})
    assert [s.discreet for s in await default.everyone()] == [True]

    loud = await make_site(discreet_default=False)
    assert not ticked(await page_of(await loud.client.get("/subscribe")))


async def test_confirm_link_expires_after_pending_days(site: Site) -> None:
    await site.sign_up("ana@example.org")
    path = link_path(part_text(site.outbox_for("ana@example.org")[0], "plain"), "confirm")
    [before] = await site.everyone()
    # Shorter than link_lifetime: the confirm link has its own, shorter lifetime.
    site.clock.advance(timedelta(days=site.parts.config.web.pending_days, minutes=1))
    resp = await site.client.get(path)
    assert resp.status == 410
    assert_plain_error(site, await page_of(resp), 410, "ana@example.org")
    assert await site.everyone() == [before]


async def test_confirm_refuses_forged_and_misused_tokens(site: Site) -> None:
    pending = await site.add("ana@example.org", status="pending")
    other = await site.add("bob@example.org", status="pending")
    good = site.token("confirm", pending.id)
    # Another subscriber's payload under this signature.
    forged_payload = site.token("confirm", other.id).split(".", 1)[0] + "." + good.split(".", 1)[1]
    for token in (
        tampered(good),
        forged_payload,
        site.token("unsubscribe", pending.id),
        site.token("manage", pending.id),
        "not-a-token",
    ):
        resp = await site.client.get(f"/confirm/{token}")
        assert resp.status == 400, token
        assert_plain_error(site, await page_of(resp), 400, "ana@example.org")
    assert await site.everyone() == [pending, other]


async def test_confirm_after_unsubscribing_does_not_resubscribe(site: Site) -> None:
    await site.sign_up("ana@example.org")
    path = link_path(part_text(site.outbox_for("ana@example.org")[0], "plain"), "confirm")
    [sub] = await site.everyone()
    assert (await site.confirm(path)).status == 200
    unsubscribe = await site.client.post(
        f"/unsubscribe/{site.token('unsubscribe', sub.id)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert unsubscribe.status == 200
    resp = await site.client.get(path)
    assert resp.status == 410
    assert (await site.get_subscriber(sub.id)).status == "unsubscribed"


# -- managing ---------------------------------------------------------------------------------


async def test_manage_page_shows_status_progress_and_forms(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    resp = await site.client.get(f"/manage/{token}")
    assert resp.status == 200
    page = await page_of(resp)
    texts = page.texts("p")
    total = len(site.sequence)
    assert "Status: receiving emails" in texts
    assert f"Progress: 0 of {total} lessons received." in texts
    # 05:00 UTC is 06:00 in Berlin: the first email is later the same morning.
    assert "Next email: on Monday 2 March at 07:30 (Europe/Berlin time)" in texts
    forms = page.forms()
    base = f"/manage/{token}"
    assert forms[f"{base}/pause"] == "post"
    assert forms[f"{base}/settings"] == "post"
    assert f"{base}/repeat" not in forms  # nothing sent yet, nothing to repeat
    assert any(a.startswith("/export/") for a in forms)
    assert any(a.startswith("/erase/") for a in forms)
    assert any(a.startswith("/unsubscribe/") for a in forms)
    selected = [a.get("value") for a in page.all("option") if "selected" in a]
    # No country chosen: the one of the timezone is offered (Germany: "Somewhere else").
    assert selected == ["Europe/Berlin", "other"]
    labels = {a.get("for") for a in page.all("label")}
    for attrs in page.all("input") + page.all("select"):
        if attrs.get("type") != "hidden":
            assert attrs.get("id") in labels
    assert page.quick_exits() == [site.parts.config.web.quick_exit_url]

    await site.due_lesson(sub)
    page = await page_of(await site.client.get(f"/manage/{token}"))
    assert f"Progress: 1 of {total} lessons received." in page.texts("p")
    assert f"{base}/repeat" in page.forms()


@pytest.mark.parametrize("action", ["pause", "resume", "settings", "repeat", "sequence"])
@pytest.mark.parametrize(
    ("cookie", "csrf"),
    [(True, None), (True, "x" * 43), (False, ""), (False, None)],
    ids=["no-token", "wrong-token", "no-cookie-empty-token", "no-cookie-no-token"],
)
async def test_manage_actions_need_the_csrf_token(
    site: Site, action: str, cookie: bool, csrf: str | None
) -> None:
    sub = await site.add("ana@example.org")
    await site.due_lesson(sub)  # so that repeat would have something to do
    if action == "resume":
        sub = await life.pause(site.parts.store, sub, now=site.clock(), actor="test")
    before = await site.get_subscriber(sub.id)
    if cookie:
        await site.csrf()  # the browser has its cookie; the form lacks its token
    form = {"timezone": "America/New_York", "send_time": "21:15", "discreet": "yes"}
    form["sequence"] = OTHER
    if csrf is not None:
        form["csrf"] = csrf
    token = site.token("manage", sub.id)
    resp = await site.client.post(f"/manage/{token}/{action}", data=form, allow_redirects=False)
    assert resp.status == 403
    assert await site.get_subscriber(sub.id) == before
    assert (await site.parts.store.progress([sub.id]))[sub.id] == [site.sequence.lessons[0].id]


async def test_pause_and_resume(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    resp = await site.post(f"/manage/{token}/pause")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{token}?done=pause"
    paused = await site.get_subscriber(sub.id)
    assert (paused.status, paused.next_due_at) == ("paused", None)
    page = await page_of(await site.client.get(resp.headers["Location"]))
    assert account.NOTICES["pause"] in page.texts("p")
    assert f"/manage/{token}/resume" in page.forms()

    again = await site.post(f"/manage/{token}/pause")  # already paused: said plainly
    assert again.status == 409
    assert await site.get_subscriber(sub.id) == paused

    site.clock.advance(timedelta(days=2, hours=3))
    resp = await site.post(f"/manage/{token}/resume")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{token}?done=resume"
    resumed = await site.get_subscriber(sub.id)
    assert resumed.status == "active"
    assert resumed.next_due_at == next_send_time(
        tz=ZoneInfo("Europe/Berlin"),
        send_time=parse_send_time("07:30"),
        now=site.clock(),
        last_sent_at=None,
    )


async def test_settings_change_time_zone_and_discretion(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    form = {"timezone": "America/New_York", "send_time": "21:15", "discreet": "yes"}
    resp = await site.post(f"/manage/{token}/settings", form)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{token}?done=settings"
    changed = await site.get_subscriber(sub.id)
    assert (changed.timezone, changed.send_time, changed.discreet) == (
        "America/New_York",
        "21:15",
        True,
    )
    assert changed.next_due_at != sub.next_due_at
    assert changed.next_due_at == next_send_time(
        tz=ZoneInfo("America/New_York"),
        send_time=parse_send_time("21:15"),
        now=site.clock(),
        last_sent_at=None,
    )
    assert changed.next_due_at == datetime(2026, 3, 3, 2, 15, tzinfo=UTC)
    page = await page_of(await site.client.get(resp.headers["Location"]))
    assert account.NOTICES["settings"] in page.texts("p")
    selected = [a.get("value") for a in page.all("option") if "selected" in a]
    assert selected == ["America/New_York", "US"]

    # An unticked box turns discreet mode off again.
    form = {"timezone": "America/New_York", "send_time": "21:15"}
    assert (await site.post(f"/manage/{token}/settings", form)).status == 303
    assert (await site.get_subscriber(sub.id)).discreet is False


@pytest.mark.parametrize(
    ("timezone", "send_time"), [("Nowhere/Special", "08:00"), ("Europe/Berlin", "8 am")]
)
async def test_invalid_settings_change_nothing(site: Site, timezone: str, send_time: str) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    resp = await site.post(
        f"/manage/{token}/settings", {"timezone": timezone, "send_time": send_time}
    )
    assert resp.status == 400
    page = await page_of(resp)
    assert page.texts("h1") == ["Please check your settings"]
    assert await site.get_subscriber(sub.id) == sub


async def test_repeat_sends_the_last_lesson_again(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    nothing = await site.post(f"/manage/{token}/repeat")
    assert nothing.status == 409  # no lesson sent yet
    assert await site.get_subscriber(sub.id) == sub

    first = await site.due_lesson(sub)
    resp = await site.post(f"/manage/{token}/repeat")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{token}?done=repeat"
    page = await page_of(await site.client.get(resp.headers["Location"]))
    assert account.NOTICES["repeat"] in page.texts("p")
    assert f"Progress: 0 of {len(site.sequence)} lessons received." in page.texts("p")
    again = await site.due_lesson(sub)
    assert again["Subject"] == first["Subject"]
    assert f"Day 1 of {len(site.sequence)}" in part_text(again, "plain")


async def test_manage_link_expires(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    site.clock.advance(site.parts.config.link_lifetime + timedelta(minutes=1))
    resp = await site.client.get(f"/manage/{token}")
    assert resp.status == 410
    assert_plain_error(site, await page_of(resp), 410, "ana@example.org")
    resp = await site.post(f"/manage/{token}/pause")
    assert resp.status == 410
    assert await site.get_subscriber(sub.id) == sub


async def test_manage_for_someone_who_left_is_gone(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    await life.unsubscribe(site.parts.store, sub, now=site.clock(), actor="test")
    resp = await site.client.get(f"/manage/{token}")
    assert resp.status == 410
    assert_plain_error(site, await page_of(resp), 410, "ana@example.org")


# -- choosing and switching sequences ---------------------------------------------------------


def fieldset_text(html: str) -> str:
    """The visible text of the sequence choice, without its tags."""
    match = re.search(r"<fieldset.*?</fieldset>", html, re.S)
    assert match, "no sequence choice on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


async def event_reasons(site: Site, sub: Subscriber) -> list[tuple[str, str, str]]:
    _, audit = await site.parts.store.history(sub.id)
    return [(e["actor"], e["reason"], e["new_status"]) for e in audit]


async def test_sign_up_offers_each_sequence_in_plain_words(site: Site) -> None:
    resp = await site.client.get("/subscribe")
    page = await page_of(resp)
    library = site.parts.library.current()
    radios = [a for a in page.all("input") if a.get("type") == "radio"]
    assert [a.get("value") for a in radios] == ["no-contact", OTHER]  # the default first
    assert [a.get("value") for a in radios if "checked" in a] == ["no-contact"]
    assert {a.get("name") for a in radios} == {"sequence"}
    text = fieldset_text(page.html)
    for sequence in library.values():
        assert sequence.title in text
        assert f"{len(sequence)} emails" in text
        text = text.replace(sequence.title, "")
    # Beyond the titles, nothing names the topic: the page may be seen by someone else.
    for word in (*TOPIC_WORDS, "hurt", "low contact", "fourteen"):
        assert word not in text.lower(), f"the sequence choice says {word!r}: {text}"


async def test_sign_up_for_the_second_sequence_gets_its_lessons(site: Site) -> None:
    status, _ = await site.sign_up("ana@example.org", {"sequence": OTHER})
    assert status == 200
    [sub] = await site.everyone()
    assert (sub.sequence_id, sub.status) == (OTHER, "pending")
    path = link_path(part_text(site.outbox_for("ana@example.org")[0], "plain"), "confirm")
    assert (await site.confirm(path)).status == 200
    other = site.parts.library.current()[OTHER]
    first = await site.due_lesson(sub)
    assert f"Day 1 of {len(other)}" in part_text(first, "plain")
    assert other.lessons[0].title in part_text(first, "plain")
    assert (await site.parts.store.progress([sub.id]))[sub.id] == [other.lessons[0].id]


@pytest.mark.parametrize("value", ["nowhere", "../no-contact", "No-Contact", "low-contact "])
async def test_unknown_sequence_is_refused_with_the_form_again(site: Site, value: str) -> None:
    status, body = await site.sign_up("ana@example.org", {"sequence": value})
    assert status == 400
    assert "Choose one of the readings listed." in body
    assert 'href="#sequence"' in body and 'id="sequence"' in body
    assert 'value="ana@example.org"' in body  # what was typed is kept
    assert await site.everyone() == []
    assert site.transport.outbox == []


async def test_erased_or_bounced_in_one_sequence_gets_nothing_from_another(site: Site) -> None:
    erased = await site.add("gone@example.org")
    await site.parts.store.erase(erased.id, now=site.clock(), actor="test")
    await site.add("bounced@example.org", status="bounced")
    for address in ("gone@example.org", "bounced@example.org"):
        status, body = await site.sign_up(address, {"sequence": OTHER})
        assert (status, "Check your inbox" in body) == (200, True)
    assert site.transport.outbox == []
    assert len(await site.everyone()) == 2  # no row in the other sequence either


async def test_switching_keeps_each_sequences_progress(site: Site) -> None:
    store, library = site.parts.store, site.parts.library.current()
    default, other = library["no-contact"], library[OTHER]
    sub = await site.add("ana@example.org")
    await site.due_lesson(sub)
    await site.due_lesson(sub)
    before = await site.get_subscriber(sub.id)
    token = site.token("manage", sub.id)
    page = await page_of(await site.client.get(f"/manage/{token}"))
    assert f"/manage/{token}/sequence" in page.forms()
    radios = [a for a in page.all("input") if a.get("type") == "radio"]
    assert [a.get("value") for a in radios if "checked" in a] == ["no-contact"]

    site.clock.advance(timedelta(hours=1))
    resp = await site.post(f"/manage/{token}/sequence", {"sequence": OTHER})
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{token}?done=sequence"
    switched = await site.get_subscriber(sub.id)
    assert (switched.sequence_id, switched.status) == (OTHER, "active")
    # Same generation and next send time; only the sequence and updated_at changed.
    assert switched == dataclasses.replace(before, sequence_id=OTHER, updated_at=site.clock())
    assert (await store.progress([sub.id]))[sub.id] == [x.id for x in default.lessons[:2]]
    assert (await event_reasons(site, sub))[-1] == (
        "web",
        f"switched from no-contact to {OTHER}",
        "active",
    )
    page = await page_of(await site.client.get(resp.headers["Location"]))
    assert account.NOTICES["sequence"] in page.texts("p")
    assert f"Progress: 0 of {len(other)} lessons received." in page.texts("p")
    assert f"{site.token('manage', sub.id)}/repeat" not in page.forms()  # none of these yet
    assert "You have received 2." in fieldset_text(page.html)
    # Repeat would forget the other sequence's lesson and send it only after switching back.
    assert (await site.post(f"/manage/{token}/repeat")).status == 409

    mail = await site.due_lesson(sub)
    assert f"Day 1 of {len(other)}" in part_text(mail, "plain")
    assert (await site.post(f"/manage/{token}/sequence", {"sequence": "no-contact"})).status == 303
    mail = await site.due_lesson(sub)
    assert f"Day 3 of {len(default)}" in part_text(mail, "plain")  # where they left off
    recorded = (await store.progress([sub.id]))[sub.id]
    assert recorded == [*(x.id for x in default.lessons[:2]), other.lessons[0].id, default.order[2]]
    assert (await site.get_subscriber(sub.id)).generation == before.generation


async def test_a_completed_reader_switching_to_unfinished_readings_is_active_again(
    site: Site,
) -> None:
    store, library = site.parts.store, site.parts.library.current()
    sub = await site.add("ana@example.org", sequence_id=OTHER)
    for lesson in library[OTHER].lessons:
        await store.skip(sub, lesson.id, site.clock())
    sub = await life.pause(store, sub, now=site.clock(), actor="test")
    done = await store.change(sub.id, now=site.clock(), actor="test", status="completed")
    assert done is not None
    token = site.token("manage", sub.id)
    site.clock.advance(timedelta(days=1, hours=3))
    resp = await site.post(f"/manage/{token}/sequence", {"sequence": "no-contact"})
    assert resp.status == 303
    active = await site.get_subscriber(sub.id)
    assert (active.sequence_id, active.status, active.generation) == (
        "no-contact",
        "active",
        sub.generation,
    )
    assert active.next_due_at == next_send_time(
        tz=ZoneInfo("Europe/Berlin"),
        send_time=parse_send_time("07:30"),
        now=site.clock(),
        last_sent_at=None,
    )
    mail = await site.due_lesson(active)
    assert "Day 1 of " in part_text(mail, "plain")

    # A finished sequence stays finished: switching back is refused and changes nothing.
    before = await site.get_subscriber(sub.id)
    refused = await site.post(f"/manage/{token}/sequence", {"sequence": OTHER})
    assert refused.status == 409
    assert "already received every lesson" in await refused.text()
    assert await site.get_subscriber(sub.id) == before


@pytest.mark.parametrize("value", ["", "nowhere", "no-contact"])
async def test_switching_to_an_unknown_or_the_same_sequence_changes_nothing(
    site: Site, value: str
) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("manage", sub.id)
    resp = await site.post(f"/manage/{token}/sequence", {"sequence": value})
    assert resp.status == (409 if value == "no-contact" else 400)
    assert await site.get_subscriber(sub.id) == sub
    assert (await event_reasons(site, sub))[-1][1] == "added"


async def test_switching_to_a_sequence_the_address_has_separately_is_refused(site: Site) -> None:
    sub = await site.add("ana@example.org")
    await site.add("ana@example.org", sequence_id=OTHER)
    resp = await site.post(f"/manage/{site.token('manage', sub.id)}/sequence", {"sequence": OTHER})
    assert resp.status == 409
    assert "separate subscription" in await resp.text()
    assert await site.get_subscriber(sub.id) == sub


# -- your data --------------------------------------------------------------------------------


async def test_export_returns_a_json_attachment(site: Site) -> None:
    sub = await site.add("ana@example.org")
    await site.due_lesson(sub)
    token = site.token("export", sub.id)
    resp = await site.post(f"/export/{token}")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    data = json.loads(await resp.text())
    assert data["subscriber"]["email"] == "ana@example.org"
    assert data["subscriber"]["name"] == NAME
    assert data["subscriber"]["timezone"] == "Europe/Berlin"
    assert [d["lesson_id"] for d in data["deliveries"]] == [site.sequence.lessons[0].id]
    assert data["events"] and data["events"][0]["new_status"] == "active"


async def test_export_needs_csrf_and_a_fresh_link(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("export", sub.id)
    await site.csrf()
    refused = await site.post(f"/export/{token}", csrf=False)
    assert refused.status == 403
    assert refused.content_type == "text/html"
    assert "ana@example.org" not in await refused.text()
    site.clock.advance(site.parts.config.link_lifetime + timedelta(minutes=1))
    expired = await site.post(f"/export/{token}")
    assert expired.status == 410
    assert_plain_error(site, await page_of(expired), 410, "ana@example.org")


async def test_erase_needs_csrf_and_confirmation(site: Site) -> None:
    sub = await site.add("ana@example.org")
    await site.due_lesson(sub)
    sub = await site.get_subscriber(sub.id)
    token = site.token("erase", sub.id)
    await site.csrf()
    assert (await site.post(f"/erase/{token}", {"confirm": "yes"}, csrf=False)).status == 403
    assert await site.get_subscriber(sub.id) == sub

    for form in ({}, {"confirm": "no"}):
        resp = await site.post(f"/erase/{token}", form)
        assert resp.status == 400
        assert (await page_of(resp)).texts("h1") == ["Nothing was erased"]
        assert await site.get_subscriber(sub.id) == sub

    resp = await site.post(f"/erase/{token}", {"confirm": "yes"})
    assert resp.status == 200
    assert (await page_of(resp)).texts("h1") == ["Your data is erased"]
    erased = await site.get_subscriber(sub.id)
    assert (erased.email, erased.name, erased.status) == (None, "", "erased")
    assert (await site.parts.store.progress([sub.id]))[sub.id] == []


async def test_no_email_ever_again_after_erasure_or_a_bounce(site: Site) -> None:
    erased = await site.add("gone@example.org")
    await site.parts.store.erase(erased.id, now=site.clock(), actor="test")
    await site.add("bounced@example.org", status="bounced")
    answers = []
    for address in ("gone@example.org", "bounced@example.org"):
        status, body = await site.sign_up(address)
        answers.append((status, CSRF_FIELD.sub("", body)))
    # The same answer as for anyone, and nothing sent: erasure promised never to email again.
    assert answers[0] == answers[1] and answers[0][0] == 200
    assert site.transport.outbox == []
    assert (await site.get_subscriber(erased.id)).status == "erased"


async def test_erase_link_expires(site: Site) -> None:
    sub = await site.add("ana@example.org")
    token = site.token("erase", sub.id)
    site.clock.advance(site.parts.config.link_lifetime + timedelta(minutes=1))
    resp = await site.post(f"/erase/{token}", {"confirm": "yes"})
    assert resp.status == 410
    assert_plain_error(site, await page_of(resp), 410, "ana@example.org")
    assert await site.get_subscriber(sub.id) == sub


# -- one-click unsubscribe --------------------------------------------------------------------


async def test_one_click_unsubscribe_exactly_as_gmail_sends_it(site: Site) -> None:
    sub = await site.add("ana@example.org")
    lesson = await site.due_lesson(sub)
    url = str(lesson["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
    assert url.startswith(PUBLIC + "/unsubscribe/")
    boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert len(site.client.session.cookie_jar) == 0  # no cookies, no CSRF token
    for _ in range(2):  # a retry by the mail provider is fine
        resp = await site.client.post(
            urlsplit(url).path, data=body, headers=headers, allow_redirects=False
        )
        assert resp.status == 200
        assert "You are unsubscribed" in await resp.text()
        left = await site.get_subscriber(sub.id)
        assert (left.status, left.next_due_at) == ("unsubscribed", None)
    site.clock.advance(timedelta(days=3))
    assert (await site.parts.dispatcher.tick()).claimed == 0


async def test_one_click_unsubscribe_urlencoded(site: Site) -> None:
    sub = await site.add("ana@example.org")
    path = f"/unsubscribe/{site.token('unsubscribe', sub.id)}"
    resp = await site.client.post(
        path, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False
    )
    assert resp.status == 200
    assert (await site.get_subscriber(sub.id)).status == "unsubscribed"


async def test_a_page_request_goes_before_the_pass(site: Site) -> None:
    # While a request is served the dispatcher's pass waits (guide/foreground.py), and the
    # request's database writes queue as a page's, ahead of the pass's.
    sub = await site.add("ana@example.org")
    path = f"/unsubscribe/{site.token('unsubscribe', sub.id)}"
    foreground = site.parts.dispatcher.foreground
    turns = site.parts.store.write_turns
    assert turns is not None and foreground.in_flight == 0
    foreground.max_wait = 30.0  # so only the end of the request can release the pass
    async with site.parts.store.writing():  # the pass holds the one writer
        post = asyncio.ensure_future(
            site.client.post(path, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False)
        )
        for _ in range(200):
            await asyncio.sleep(0.01)
            if turns.waiting_pages:
                break
        assert (foreground.in_flight, turns.waiting_pages, turns.waiting_others) == (1, 1, 0)
        held_back = asyncio.ensure_future(foreground.turn())
        await asyncio.sleep(0.01)
        assert not held_back.done()  # the pass's next message waits for the page
    resp = await post
    assert resp.status == 200
    await asyncio.wait_for(held_back, 5)
    assert foreground.in_flight == 0
    assert (await site.get_subscriber(sub.id)).status == "unsubscribed"


async def test_unsubscribe_link_never_expires(site: Site) -> None:
    sub = await site.add("ana@example.org")
    path = f"/unsubscribe/{site.token('unsubscribe', sub.id)}"
    site.clock.advance(timedelta(days=3 * 365))
    assert (await site.client.get(path)).status == 200
    resp = await site.client.post(
        path, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False
    )
    assert resp.status == 200
    assert (await site.get_subscriber(sub.id)).status == "unsubscribed"


async def test_unsubscribe_page_asks_first_and_changes_nothing(site: Site) -> None:
    sub = await site.add("ana@example.org")
    path = f"/unsubscribe/{site.token('unsubscribe', sub.id)}"
    resp = await site.client.get(path)
    assert resp.status == 200
    page = await page_of(resp)
    assert page.forms() == {path: "post"}
    hidden = [a for a in page.all("input") if a.get("name") == "List-Unsubscribe"]
    assert [a.get("value") for a in hidden] == ["One-Click"]
    assert [a for a in page.all("button") if a.get("type") == "submit"]
    pause = [str(a["href"]) for a in page.all("a") if "/manage/" in str(a.get("href"))]
    assert len(pause) == 1
    assert await site.get_subscriber(sub.id) == sub


# -- reading online ---------------------------------------------------------------------------


async def test_lesson_page_is_the_email_html(site: Site) -> None:
    sub = await site.add("ana@example.org")
    message = await site.due_lesson(sub)
    emailed = part_text(message, "html")
    path = link_path(emailed, "lesson")
    resp = await site.client.get(path)
    assert resp.status == 200
    online = await resp.text()
    page, mail = Page(online), Page(emailed)

    lesson = site.sequence.lessons[0]
    assert page.texts("h1") == mail.texts("h1") == [lesson.title]
    day_line = f"Day 1 of {len(site.sequence)} · {site.sequence.phase_title(lesson.phase)}"
    assert day_line in page.texts("p")
    assert day_line in mail.texts("p")
    body = [text for text in mail.texts("p") if len(text) > 80]
    assert body, "the lesson body has no paragraphs"
    assert page.texts("p") == mail.texts("p")
    assert page.texts("li") == mail.texts("li")

    assert page.quick_exits() == [site.parts.config.web.quick_exit_url]
    # Apart from the quick exit, the page is the email's HTML part byte for byte.
    without_exit = re.sub(r"<a href=\"[^\"]*\" data-quick-exit.*?</script>", "", online, count=1)
    assert without_exit == emailed
    assert "Referrer-Policy" in resp.headers
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_discreet_lesson_page_matches_the_discreet_email(site: Site) -> None:
    sub = await site.add("quiet@example.org", discreet=True)
    message = await site.due_lesson(sub)
    emailed = part_text(message, "html")
    resp = await site.client.get(link_path(emailed, "lesson"))
    assert resp.status == 200
    page = Page(await resp.text())
    assert page.texts("p") == Page(emailed).texts("p")
    assert page.all("title") == [{}]
    [title] = re.findall(r"<title>(.*?)</title>", await resp.text())
    for word in TOPIC_WORDS:
        assert word not in title.lower()


async def test_lesson_page_refuses_bad_tokens(site: Site) -> None:
    sub = await site.add("ana@example.org")
    lesson_id = site.sequence.lessons[0].id
    good = site.token("lesson", [sub.id, lesson_id])
    for token in (
        tampered(good),
        site.token("manage", sub.id),
        site.token("lesson", sub.id),  # no lesson in the payload
    ):
        resp = await site.client.get(f"/lesson/{token}")
        assert resp.status == 400
        assert_plain_error(site, await page_of(resp), 400, "ana@example.org")
    for token in (
        site.token("lesson", [sub.id, "no-such-lesson"]),
        site.token("lesson", [sub.id + 1000, lesson_id]),
    ):
        resp = await site.client.get(f"/lesson/{token}")
        assert resp.status == 410
        assert_plain_error(site, await page_of(resp), 410, "ana@example.org")
    assert (await site.client.get(f"/lesson/{good}")).status == 200
    assert await site.get_subscriber(sub.id) == sub


# -- bad links on every route -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    purpose: str
    expires: bool = True


ROUTES = [
    Route("GET", "/confirm/{}", "confirm"),
    Route("POST", "/confirm/{}", "confirm"),
    Route("GET", "/manage/{}", "manage"),
    Route("POST", "/manage/{}/pause", "manage"),
    Route("POST", "/manage/{}/resume", "manage"),
    Route("POST", "/manage/{}/settings", "manage"),
    Route("POST", "/manage/{}/repeat", "manage"),
    Route("POST", "/export/{}", "export"),
    Route("POST", "/erase/{}", "erase"),
    Route("GET", "/unsubscribe/{}", "unsubscribe", expires=False),
    Route("POST", "/unsubscribe/{}", "unsubscribe", expires=False),
    Route("GET", "/lesson/{}", "lesson"),
]


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.template}" for r in ROUTES])
async def test_bad_tokens_get_a_plain_page_and_change_nothing(site: Site, route: Route) -> None:
    status = "pending" if route.purpose == "confirm" else "active"
    sub = await site.add("ana@example.org", status=status)
    if status == "active":
        await site.due_lesson(sub)  # so repeat, export and erase would have something to do
        site.clock.now = START
    before = await site.get_subscriber(sub.id)
    progress = await site.parts.store.progress([sub.id])
    outbox = len(site.transport.outbox)
    lesson_id = site.sequence.lessons[0].id

    def payload(subscriber_id: int) -> object:
        return [subscriber_id, lesson_id] if route.purpose == "lesson" else subscriber_id

    wrong_purpose = "manage" if route.purpose != "manage" else "unsubscribe"
    cases: list[tuple[str, int]] = [
        (tampered(site.token(route.purpose, payload(sub.id))), 400),
        (site.token(wrong_purpose, payload(sub.id)), 400),
        ("garbage", 400),
        (site.token(route.purpose, payload(sub.id + 1000)), 410),  # nobody: same as expired
    ]
    csrf = await site.csrf()
    form = {
        "csrf": csrf,
        "confirm": "yes",
        "timezone": "UTC",
        "send_time": "09:00",
        "List-Unsubscribe": "One-Click",
    }

    async def attempt(token: str, expected: int) -> None:
        url = route.template.format(token)
        if route.method == "GET":
            resp = await site.client.get(url, allow_redirects=False)
        else:
            resp = await site.client.post(url, data=form, allow_redirects=False)
        assert resp.status == expected, (url, await resp.text())
        assert resp.content_type == "text/html"
        assert_plain_error(site, await page_of(resp), expected, "ana@example.org")

    for token, expected in cases:
        await attempt(token, expected)
    if route.expires:
        token = site.token(route.purpose, payload(sub.id))
        config = site.parts.config
        lifetime = (
            timedelta(days=config.web.pending_days)
            if route.purpose == "confirm"
            else config.link_lifetime
        )
        site.clock.advance(lifetime + timedelta(minutes=1))
        await attempt(token, 410)
    assert await site.get_subscriber(sub.id) == before
    assert await site.parts.store.progress([sub.id]) == progress
    await drain()
    assert len(site.transport.outbox) == outbox


async def test_unknown_url_gets_a_404_page_with_the_quick_exit(site: Site) -> None:
    resp = await site.client.get("/wp-admin/setup.php")
    assert resp.status == 404
    page = await page_of(resp)
    assert page.texts("h1") == ["Page not found"]
    assert page.quick_exits() == [site.parts.config.web.quick_exit_url]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    unknown_action = await site.post(f"/manage/{site.token('manage', 1)}/delete-everything")
    assert unknown_action.status == 404


async def test_wrong_method_gets_a_plain_405_page(site: Site) -> None:
    sub = await site.add("ana@example.org")
    resp = await site.client.get(f"/erase/{site.token('erase', sub.id)}")
    assert resp.status == 405
    page = await page_of(resp)
    assert page.texts("h1") == ["Not allowed"]
    assert page.quick_exits() == [site.parts.config.web.quick_exit_url]
    assert await site.get_subscriber(sub.id) == sub


# -- operator endpoints -----------------------------------------------------------------------


async def test_healthz_is_ok_after_a_recent_tick(site: Site) -> None:
    await site.parts.dispatcher.tick()
    site.clock.advance(timedelta(seconds=12))
    resp = await site.client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["scheduler"] == "running"
    assert body["last_tick_age_seconds"] == 12.0
    assert body["relay"] == "ok"


async def test_healthz_fails_before_the_first_tick(site: Site) -> None:
    resp = await site.client.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert body["last_tick_age_seconds"] is None


async def test_healthz_fails_when_the_scheduler_stopped(site: Site) -> None:
    await site.parts.dispatcher.tick()
    site.scheduler.on = False
    resp = await site.client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["scheduler"] == "stopped"


async def test_healthz_fails_when_ticks_are_stale(site: Site) -> None:
    await site.parts.dispatcher.tick()
    stale = 3 * site.parts.config.dispatch.interval_seconds + 60
    site.clock.advance(timedelta(seconds=stale))
    assert (await site.client.get("/healthz")).status == 200  # the limit itself is still fine
    site.clock.advance(timedelta(seconds=1))
    resp = await site.client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["last_tick_age_seconds"] == stale + 1


async def test_healthz_fails_when_sending_halted(site: Site) -> None:
    await site.parts.dispatcher.tick()
    site.parts.dispatcher.stats.halted = TransportConfigError("smtp.username", "x")
    resp = await site.client.get("/healthz")
    assert resp.status == 503
    relay = (await resp.json())["relay"]
    assert relay.startswith("halted") and "smtp.username" in relay


async def test_healthz_fails_when_every_send_fails_for_longer_than_a_few_passes(
    site: Site,
) -> None:
    sub = await site.add("ana@example.org")
    assert sub.next_due_at is not None
    site.clock.now = sub.next_due_at
    refused = SendResult(Status.TRANSIENT, None, "connection refused by relay")
    site.transport.script.extend([refused] * 50)
    assert (await site.parts.dispatcher.tick()).results["retry"] == 1
    body = await (await site.client.get("/healthz")).json()
    assert body["status"] == "ok"  # one deferral is not an outage
    assert body["relay"].startswith("failing for 0 s") and body["failing_seconds"] == 0

    grace = site.parts.config.dispatch.relay_alert_seconds
    site.clock.advance(timedelta(seconds=grace + 1))
    await site.parts.dispatcher.tick()  # the pass is fresh: only the relay is wrong
    resp = await site.client.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["last_tick_age_seconds"] == 0
    assert "connection refused by relay" in body["relay"]
    assert body["failing_seconds"] == grace + 1
    metrics = await (await site.client.get("/metrics")).text()
    node = site.parts.dispatcher.node
    assert metric(metrics, f'drg_sending_failing_seconds{{node="{node}"}}') == grace + 1

    site.transport.script.clear()  # the relay is back
    retried = await site.get_subscriber(sub.id)
    assert retried is not None and retried.next_due_at is not None
    site.clock.now = max(site.clock.now, retried.next_due_at)
    assert (await site.parts.dispatcher.tick()).results["sent"] == 1
    body = await (await site.client.get("/healthz")).json()
    assert body["status"] == "ok" and body["relay"] == "ok" and body["failing_seconds"] is None


async def test_metrics(site: Site) -> None:
    sub = await site.add("ana@example.org")
    await site.add("waiting@example.org", status="pending")
    assert sub.next_due_at is not None
    site.clock.now = sub.next_due_at
    before = await site.client.get("/metrics")
    assert before.status == 200
    text = await before.text()
    assert metric(text, "drg_due_backlog") == 1
    assert "drg_messages_total{" not in text

    report = await site.parts.dispatcher.tick()
    assert report.results["sent"] == 1
    resp = await site.client.get("/metrics")
    assert resp.content_type == "text/plain"
    text = await resp.text()
    node = site.parts.dispatcher.node
    assert metric(text, f'drg_messages_total{{node="{node}",result="sent"}}') == 1
    assert metric(text, f'drg_tick_duration_seconds_total{{node="{node}"}}') > 0
    assert metric(text, f'drg_ticks_total{{node="{node}"}}') == 1
    assert metric(text, "drg_due_backlog") == 0
    assert metric(text, 'drg_subscribers{status="active"}') == 1
    assert metric(text, 'drg_subscribers{status="pending"}') == 1
