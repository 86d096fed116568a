"""The aiohttp application: subscriber pages and operator endpoints, in the service's loop."""

from __future__ import annotations

import hmac
import secrets
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from guide.lessons import Sequence
from scheduler.service import Parts
from web.limits import SlidingWindow

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"
STATIC = Path(__file__).resolve().parent / "static"
CSRF_COOKIE = "drg_csrf"
MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No third-party anything: scripts and styles only from this origin, nothing framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class WebContext:
    """What the handlers need; one per application."""

    parts: Parts
    scheduler_running: Callable[[], bool] = lambda: True
    env: Environment = field(init=False)
    client_limit: SlidingWindow = field(init=False)
    address_limit: SlidingWindow = field(init=False)
    zones: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        web_config = self.parts.config.web
        clock = self.parts.dispatcher.clock

        def seconds() -> float:
            return clock().timestamp()

        self.client_limit = SlidingWindow(web_config.client_limit_per_hour, 3600, seconds)
        self.address_limit = SlidingWindow(web_config.address_limit_per_day, 86400, seconds)
        self.zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")

    @property
    def sequence(self) -> Sequence:
        """The default sequence, as currently loaded."""
        sequences = self.parts.library.current()
        return sequences[self.parts.config.default_sequence]

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        """A page with the shared layout values and the CSRF token."""
        config = self.parts.config
        footer = config.footer
        page = self.env.get_template(template).render(
            site_title=config.sender.discreet_name,
            quick_exit_url=config.web.quick_exit_url,
            crisis_resources=footer.crisis_resources,
            emergency=footer.emergency,
            disclaimer=footer.disclaimer,
            csrf=csrf_token(request),
            **values,
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    def message(
        self,
        request: web.Request,
        heading: str,
        *paragraphs: str,
        status: int = 200,
        link: dict[str, str] | None = None,
    ) -> web.Response:
        """A simple page with a heading and a few paragraphs."""
        return self.render(
            request, "message.html", status, heading=heading, paragraphs=paragraphs, link=link
        )


CONTEXT = web.AppKey("context", WebContext)
CSRF = web.RequestKey("csrf", str)
CSRF_NEW = web.RequestKey("csrf_new", bool)


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token (double-submit cookie), made on first use."""
    token = request.get(CSRF)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE, "")
        if len(token) != 43:
            token = secrets.token_urlsafe(32)
            request[CSRF_NEW] = True
        request[CSRF] = token
    return token


async def check_csrf(request: web.Request) -> bool:
    """Whether a form POST carries the token of this browser's cookie."""
    form = await request.post()
    sent = str(form.get("csrf", ""))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(sent.encode(), cookie.encode())


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers every response carries; the CSRF cookie when a page made a new token."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and aiohttp's own errors need them too
        _protect(request, exc)
        raise
    _protect(request, response)
    return response


def _protect(request: web.Request, response: web.StreamResponse) -> None:
    """Add the security headers (and a new CSRF cookie) to `response`."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    # Links carry signed tokens: never leak them to another site through Referer.
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Permissions-Policy"] = "interest-cohort=(), browsing-topics=()"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    if request.get(CSRF_NEW):
        secure = request.app[CONTEXT].parts.config.web.public_url.startswith("https://")
        response.set_cookie(
            CSRF_COOKIE,
            request[CSRF],
            httponly=True,
            samesite="Strict",
            secure=secure,
            path="/",
        )


def create_app(context: WebContext) -> web.Application:
    """The application with every route."""
    from web import account, ops, pages

    app = web.Application(middlewares=[security_headers], client_max_size=MAX_BODY)
    app[CONTEXT] = context
    app.router.add_get("/", pages.home)
    app.router.add_get("/subscribe", pages.subscribe_form)
    app.router.add_post("/subscribe", pages.subscribe)
    app.router.add_get("/confirm/{token}", pages.confirm)
    app.router.add_get("/manage/{token}", account.manage)
    app.router.add_post("/manage/{token}/{action}", account.manage_action)
    app.router.add_post("/export/{token}", account.export)
    app.router.add_post("/erase/{token}", account.erase)
    app.router.add_get("/unsubscribe/{token}", account.unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", account.unsubscribe)
    app.router.add_get("/lesson/{token}", account.lesson)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.middlewares.append(pages.error_pages)
    return app
