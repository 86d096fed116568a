"""The admin pages over HTTP: login, sessions, CSRF, rate limit, pages, resume and its audit."""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import MemoryTransport
from guide.admin_config import AdminConfig
from guide.config import Config
from guide.passwords import hash_password
from guide.records import NewSubscriber, Subscriber
from scheduler import subscribers as life
from tests.harness import LESSONS, Clock, config_for, make_parts
from web.admin.app import create_admin_app, start_admin
from web.admin.session import SESSION_COOKIE
from web.app import create_app
from wiring import Parts, web_context

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
PASSWORD = "a long admin passphrase"
HASH = hash_password(PASSWORD)  # once: scrypt takes a tenth of a second
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')
Client = TestClient[web.Request, web.Application]


@dataclass
class Admin:
    """The admin app (and the subscriber app, sharing one context) on a fresh state folder."""

    parts: Parts
    clock: Clock
    client: Client
    site: Client

    async def csrf(self) -> str:
        resp = await self.client.get("/admin/login")
        match = CSRF_FIELD.search(await resp.text())
        assert match, "the login form has no CSRF field"
        return match.group(1)

    async def login(self, password: str = PASSWORD, *, csrf: bool = True) -> ClientResponse:
        form = {"username": "admin", "password": password}
        if csrf:
            form["csrf"] = await self.csrf()
        return await self.client.post("/admin/login", data=form, allow_redirects=False)

    async def post(self, path: str, data: dict[str, str] | None = None) -> ClientResponse:
        page = await self.client.get("/admin/")
        match = CSRF_FIELD.search(await page.text())
        assert match, "the signed-in page has no CSRF field"
        form = {"csrf": match.group(1), **(data or {})}
        return await self.client.post(path, data=form, allow_redirects=False)

    async def add(self, address: str, status: str = "active", reply: str = "") -> Subscriber:
        new = NewSubscriber(
            email=address, sequence_id="no-contact", timezone="Europe/Berlin", send_time="07:30"
        )
        sub, _ = await life.add(self.parts.store, new, now=self.clock(), actor="test")
        if status != "active":
            changed = await self.parts.store.change(
                sub.id, now=self.clock(), actor="dispatch", status=status, last_error=reply
            )
            assert changed is not None
            sub = changed
        return sub


def admin_config(config: Config, **settings: object) -> Config:
    return dataclasses.replace(config, admin=AdminConfig(password_hash=HASH, **settings))  # type: ignore[arg-type]


async def open_admin(tmp_path: Path, lessons: Path = LESSONS, **settings: object) -> Admin:
    config = admin_config(config_for(tmp_path, lessons=lessons), **settings)
    clock = Clock(START)
    parts = await make_parts(config, clock, MemoryTransport())
    context = web_context(parts)
    client = TestClient(TestServer(create_admin_app(context)))
    site = TestClient(TestServer(create_app(context)))
    await client.start_server()
    await site.start_server()
    return Admin(parts, clock, client, site)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    opened = await open_admin(tmp_path)
    yield opened
    await opened.client.close()
    await opened.site.close()
    await opened.parts.close()


# -- login -------------------------------------------------------------------------------------


async def test_pages_need_a_login_and_the_right_password_gives_one(admin: Admin) -> None:
    resp = await admin.client.get("/admin/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login"
    wrong = await admin.login("not the admin passphrase")
    assert wrong.status == 401
    assert "Wrong user name or password." in await wrong.text()
    assert SESSION_COOKIE not in wrong.cookies
    assert (await admin.client.get("/admin/", allow_redirects=False)).status == 303
    right = await admin.login()
    assert right.status == 303 and right.headers["Location"] == "/admin/"
    cookie = right.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
    assert not cookie["secure"]  # reached over http://127.0.0.1 here
    assert int(cookie["max-age"]) == 8 * 3600
    page = await admin.client.get("/admin/")
    assert page.status == 200 and "Overview" in await page.text()


async def test_a_wrong_user_name_is_refused_like_a_wrong_password(admin: Admin) -> None:
    form = {"username": "root", "password": PASSWORD, "csrf": await admin.csrf()}
    resp = await admin.client.post("/admin/login", data=form, allow_redirects=False)
    assert resp.status == 401 and SESSION_COOKIE not in resp.cookies


async def test_a_login_without_its_csrf_token_is_refused(admin: Admin) -> None:
    resp = await admin.login(csrf=False)
    assert resp.status == 403
    assert SESSION_COOKIE not in resp.cookies
    forged = {"username": "admin", "password": PASSWORD, "csrf": "x" * 43}
    await admin.csrf()  # the browser has a cookie; the form carries another token
    resp = await admin.client.post("/admin/login", data=forged, allow_redirects=False)
    assert resp.status == 403 and SESSION_COOKIE not in resp.cookies


async def test_every_post_needs_the_csrf_token_even_when_signed_in(admin: Admin) -> None:
    held = await admin.add("held@example.org", "held", "550 5.7.1 policy")
    await admin.login()
    resp = await admin.client.post(
        f"/admin/subscribers/{held.id}/resume", data={}, allow_redirects=False
    )
    assert resp.status == 403
    assert (await admin.parts.store.get(held.id)).status == "held"  # type: ignore[union-attr]
    resp = await admin.client.post("/admin/logout", data={}, allow_redirects=False)
    assert resp.status == 403
    assert (await admin.client.get("/admin/")).status == 200  # still signed in


async def test_login_attempts_are_rate_limited_per_client(admin: Admin) -> None:
    for _ in range(10):
        assert (await admin.login("a wrong passphrase")).status == 401
    # The eleventh is refused before the password is looked at, the right one too.
    limited = await admin.login()
    assert limited.status == 429 and limited.headers["Retry-After"] == "3600"
    assert SESSION_COOKIE not in limited.cookies
    admin.clock.advance(timedelta(hours=1, seconds=1))
    assert (await admin.login()).status == 303


async def test_logout_ends_the_session_even_for_a_kept_cookie(admin: Admin) -> None:
    cookie = (await admin.login()).cookies[SESSION_COOKIE].value
    resp = await admin.post("/admin/logout")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login"
    # A copy of the cookie taken before logout opens nothing.
    admin.client.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie})
    resp = await admin.client.get("/admin/", allow_redirects=False)
    assert resp.status == 303


async def test_a_session_expires_after_session_hours(admin: Admin) -> None:
    await admin.login()
    admin.clock.advance(timedelta(hours=7, minutes=59))
    assert (await admin.client.get("/admin/", allow_redirects=False)).status == 200
    admin.clock.advance(timedelta(minutes=2))
    assert (await admin.client.get("/admin/", allow_redirects=False)).status == 303


async def test_a_forged_session_cookie_opens_nothing(admin: Admin) -> None:
    admin.client.session.cookie_jar.update_cookies(
        {SESSION_COOKIE: '{"u": "admin", "s": "x"}.AAAAAA.forged'}
    )
    assert (await admin.client.get("/admin/", allow_redirects=False)).status == 303


async def test_the_cookie_is_secure_when_the_admin_url_is_https(tmp_path: Path) -> None:
    opened = await open_admin(tmp_path, public_url="https://admin.example.org")
    try:
        form = await opened.client.get("/admin/login")
        csrf = form.cookies["drg_csrf"]
        assert csrf["secure"]
        # The client keeps a Secure cookie for https only: this test sends it back itself.
        resp = await opened.client.post(
            "/admin/login",
            data={"username": "admin", "password": PASSWORD, "csrf": csrf.value},
            headers={"Cookie": f"drg_csrf={csrf.value}"},
            allow_redirects=False,
        )
        assert resp.status == 303
        assert resp.cookies[SESSION_COOKIE]["secure"]
    finally:
        await opened.client.close()
        await opened.site.close()
        await opened.parts.close()


async def test_the_subscriber_port_does_not_serve_the_admin_pages(admin: Admin) -> None:
    await admin.login()
    for path in ("/admin", "/admin/", "/admin/login", "/admin/lessons", "/admin/static/admin.css"):
        resp = await admin.site.get(path, allow_redirects=False)
        assert resp.status == 404, path
    resp = await admin.site.post("/admin/login", data={"password": PASSWORD})
    assert resp.status in (403, 404, 405)
    assert SESSION_COOKIE not in resp.cookies
    # And the admin port serves nothing but /admin.
    assert (await admin.client.get("/subscribe", allow_redirects=False)).status == 404


# -- pages -------------------------------------------------------------------------------------


async def test_the_overview_counts_statuses_sequences_due_and_sent(admin: Admin) -> None:
    for n in range(3):
        await admin.add(f"reader{n}@example.org")
    await admin.add("held@example.org", "held", "550 5.7.1 refused by policy")
    first = await admin.parts.store.get(1)
    assert first is not None and first.next_due_at is not None
    admin.clock.now = first.next_due_at
    report = await admin.parts.dispatcher.tick()
    assert report.results["sent"] == 3
    await admin.login()
    html = await (await admin.client.get("/admin/")).text()
    assert 'data-figure="sent-24h">3<' in html
    assert 'data-figure="sent-30d">3<' in html
    assert 'data-status="active">3<' in html and 'data-status="held">1<' in html
    assert 'data-failure="held">1<' in html
    assert "<svg" in html and "3 sent</title>" in html  # today's bar says 3
    assert "at most 3 in one day" in html and ">5 a day<" in html
    assert 'data-fact="database">ok (sqlite)' in html
    assert 'data-fact="relay">ok<' in html
    assert "s ago, took" in html  # the last pass
    assert '<td class="nowrap">no-contact</td>' in html


async def test_held_bounced_and_undeliverable_are_listed_masked_with_their_reply(
    admin: Admin,
) -> None:
    await admin.add("held.person@example.org", "held", "550 5.7.1 <held.person@example.org>: no")
    await admin.add("gone@example.net", "bounced", "550 5.1.1 user unknown")
    await admin.add("later@example.com", "undeliverable", "451 4.3.0 try again")
    await admin.add("fine@example.org")
    await admin.login()
    html = await (await admin.client.get("/admin/attention")).text()
    assert "h***@example.org" in html and "g***@example.net" in html and "l***@example.com" in html
    for address in ("held.person@", "gone@", "later@", "fine@", "f***@"):
        assert address not in html, address
    assert "550 5.7.1 &lt;h***@example.org&gt;: no" in html  # the address in the reply masked
    assert "550 5.1.1 user unknown" in html and "451 4.3.0 try again" in html


async def test_resume_from_the_list_is_audited_with_the_admin_as_actor(admin: Admin) -> None:
    held = await admin.add("held@example.org", "held", "550 5.7.1 policy")
    await admin.login()
    resp = await admin.post(f"/admin/subscribers/{held.id}/resume?from=attention")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/attention?done=resumed"
    after = await admin.parts.store.get(held.id)
    assert after is not None and after.status == "active" and after.next_due_at is not None
    assert after.last_error is None
    _, events = await admin.parts.store.history(held.id)
    assert events[-1]["actor"] == "admin:admin"
    assert (events[-1]["old_status"], events[-1]["new_status"]) == ("held", "active")
    # The detail page shows it in the history.
    html = await (await admin.client.get(f"/admin/subscribers/{held.id}")).text()
    assert re.search(r">held → active</td><td [^>]*>admin:admin<", html)


async def test_resume_of_someone_not_resumable_says_why(admin: Admin) -> None:
    active = await admin.add("reader@example.org")
    await admin.login()
    resp = await admin.post(f"/admin/subscribers/{active.id}/resume")
    assert resp.status == 409
    assert "cannot resume a subscriber who is active" in await resp.text()


async def test_lookup_by_exact_address_then_the_detail_with_history(admin: Admin) -> None:
    sub = await admin.add("Someone@Example.org", "bounced", "550 5.1.1 <someone@example.org>")
    await admin.add("someone.else@example.org")
    await admin.login()
    resp = await admin.post("/admin/lookup", {"address": "someone@example.ORG "})
    html = await resp.text()
    assert resp.status == 200
    listed = html[html.index('data-list="found"') : html.index("</table>")]
    assert f'href="/admin/subscribers/{sub.id}">s***@example.org' in listed
    assert "someone@" not in listed and "someone.else" not in html  # masked; exact match only
    partial = await (await admin.post("/admin/lookup", {"address": "someone"})).text()
    assert "subscribers/" not in partial  # not an address: no search by part of one
    missing = await (await admin.post("/admin/lookup", {"address": "nobody@example.org"})).text()
    assert "No subscriber has this address." in missing
    detail = await (await admin.client.get(f"/admin/subscribers/{sub.id}")).text()
    assert 'data-fact="address">someone@example.org<' in detail
    assert 'data-fact="status">bounced<' in detail
    assert re.search(r">active → bounced</td><td [^>]*>dispatch<", detail)
    assert (await admin.client.get("/admin/subscribers/999")).status == 404
    assert (await admin.client.get("/admin/subscribers/x1")).status == 404


async def test_lessons_are_tables_and_each_day_previews_in_both_modes(admin: Admin) -> None:
    await admin.login()
    html = await (await admin.client.get("/admin/lessons")).text()
    assert 'data-sequence="no-contact"' in html and 'data-sequence="low-contact"' in html
    assert 'href="/admin/lessons/no-contact/3?mode=discreet"' in html
    config = admin.parts.config
    plain = await (await admin.client.get("/admin/lessons/no-contact/1")).text()
    assert f'data-fact="from">{config.sender.name} &lt;{config.sender.address}&gt;' in plain
    discreet = await (await admin.client.get("/admin/lessons/no-contact/1?mode=discreet")).text()
    assert f'data-fact="from">{config.sender.discreet_name} &lt;' in discreet
    subjects = [re.findall(r'data-fact="subject">([^<]*)<', page) for page in (plain, discreet)]
    lesson = admin.parts.library.current()["no-contact"].lessons[0]
    assert subjects[0] == [lesson.subject.replace("'", "&#39;")]
    assert subjects[1] and subjects[1] != subjects[0]
    frame = await admin.client.get("/admin/lessons/no-contact/1/email?mode=discreet")
    assert frame.status == 200
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in frame.headers["Content-Security-Policy"]
    assert "<html" in (await frame.text()).lower()
    for bad in (
        "/admin/lessons/no-contact/0",
        "/admin/lessons/none/1",
        "/admin/lessons/no-contact/1?mode=x",
    ):
        assert (await admin.client.get(bad)).status == 404, bad
    # Other pages may not be framed at all.
    assert (await admin.client.get("/admin/lessons")).headers["X-Frame-Options"] == "DENY"


async def test_a_broken_lesson_edit_shows_the_checker_problem_with_file_and_line(
    tmp_path: Path,
) -> None:
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS, lessons)
    opened = await open_admin(tmp_path / "site", lessons=lessons)
    try:
        await opened.login()
        day = sorted((lessons / "no-contact").glob("*.yaml"))[-1]
        day.write_text(day.read_text() + "\nunknown_field: 1\n")
        opened.parts.library.current()  # the library looks at the files at most once a second
        html = await (await opened.client.get("/admin/lessons")).text()
        assert "The lesson files have problems" in html
        assert re.search(rf"{re.escape(day.name)}:\d+: ", html), html
    finally:
        await opened.client.close()
        await opened.site.close()
        await opened.parts.close()


# -- the listener --------------------------------------------------------------------------------


async def test_no_admin_configured_means_no_listener_and_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path)
    parts = await make_parts(config, Clock(START), MemoryTransport())
    try:
        with caplog.at_level(logging.INFO, logger="web.admin.app"):
            listener = await start_admin(config, web_context(parts))
        assert listener.runner is None and not listener.failed
        [line] = [r.getMessage() for r in caplog.records if r.name == "web.admin.app"]
        assert line.startswith("admin pages off: no admin password hash")
    finally:
        await parts.close()


async def test_the_admin_listens_on_its_own_port_and_a_taken_one_fails(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = admin_config(config_for(tmp_path), port=port)
        parts = await make_parts(config, Clock(START), MemoryTransport())
        try:
            listener = await start_admin(config, web_context(parts))
            assert listener.failed and listener.runner is None
        finally:
            await parts.close()
