"""What the admin handlers share: the subscriber pages' context, templates, sessions, limits."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment

from delivery.compose import Composer
from guide.admin_config import AdminConfig
from guide.tokens import LinkSigner
from web.admin.session import SESSION_COOKIE, Session, Sessions
from web.context import WebContext, page_environment
from web.csrf import csrf_token
from web.limits import SlidingWindow

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates" / "admin"
# Attempts from everywhere together: many clients guessing at once still get few tries.
LOGIN_TOTAL_FACTOR = 10
# The session of a request the middleware let through.
SESSION = web.RequestKey("admin_session", Session)


def mask(address: str | None) -> str:
    """a***@example.org: enough to tell addresses apart in a list, not to read one."""
    if not address:
        return "(erased)"
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


@dataclass
class AdminContext:
    """One per admin application; `site` is the subscriber pages' context, which reloads update."""

    site: WebContext
    env: Environment = field(init=False)
    sessions: Sessions = field(init=False)
    client_limit: SlidingWindow = field(init=False)
    total_limit: SlidingWindow = field(init=False)
    _preview: tuple[Composer, Composer] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.env = page_environment(TEMPLATES)
        self.env.filters["mask"] = mask
        self.env.filters["when"] = lambda at: at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"
        clock = self.site.clock
        self.sessions = Sessions(clock)
        per_hour = self.admin.login_attempts_per_hour

        def seconds() -> float:
            return clock().timestamp()

        self.client_limit = SlidingWindow(per_hour, 3600, seconds)
        self.total_limit = SlidingWindow(per_hour * LOGIN_TOTAL_FACTOR, 3600, seconds)

    @property
    def admin(self) -> AdminConfig:
        """The admin section as currently loaded."""
        return self.site.config.admin

    @property
    def lifetime(self) -> timedelta:
        """How long a session lasts from login."""
        return timedelta(hours=self.admin.session_hours)

    @property
    def secure(self) -> bool:
        """Whether cookies are Secure: the admin reaches these pages over https."""
        return self.admin.url.startswith("https://")

    def session(self, request: web.Request) -> Session | None:
        """The logged-in admin of `request`, or None."""
        cookie = request.cookies.get(SESSION_COOKIE, "")
        session = self.sessions.check(
            cookie, self.site.signer.secret, self.admin.password_hash, self.lifetime
        )
        # A renamed admin (config reload) is logged out too.
        return session if session and session.username == self.admin.username else None

    def preview_composer(self) -> Composer:
        """A composer whose links are signed with a throwaway key: they never work on the site."""
        current = self.site.composer
        if self._preview is None or self._preview[0] is not current:
            config = self.site.config
            # A fresh random key: a previewed link can never work on the site.
            key = secrets.token_urlsafe(32)
            signer = LinkSigner(key, config.web.public_url, config.link_lifetime)
            self._preview = (current, current.signing_with(signer))
        return self._preview[1]

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        """An admin page with the shared layout values and the CSRF token."""
        page = self.env.get_template(template).render(
            site_title=self.site.config.sender.discreet_name,
            admin=self.admin.username if request.get(SESSION) else "",
            csrf=csrf_token(request),
            **values,
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    def message(
        self, request: web.Request, heading: str, text: str, *, status: int = 200
    ) -> web.Response:
        """A page with a heading and one paragraph."""
        return self.render(request, "message.html", status, heading=heading, text=text)


ADMIN = web.AppKey("admin", AdminContext)


def admin_of(request: web.Request) -> AdminContext:
    """The admin context of the application serving `request`."""
    return request.app[ADMIN]
