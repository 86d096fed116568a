"""The admin application (routes under /admin) and its listener beside the subscriber pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from guide.config import Config
from web.admin import auth, lessons, pages
from web.admin.context import ADMIN, AdminContext
from web.context import WebContext

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SITE_CSS = Path(__file__).resolve().parent.parent / "static" / "site.css"
MAX_BODY = 16 * 1024  # forms of a few fields


async def _site_css(_request: web.Request) -> web.StreamResponse:
    # The subscriber pages' stylesheet, so both sites look alike; admin.css adds tables.
    return web.FileResponse(SITE_CSS)


def create_admin_app(context: WebContext) -> web.Application:
    """The admin application; `context` is shared with the subscriber pages (reloads too)."""
    app = web.Application(middlewares=[auth.admin_guard], client_max_size=MAX_BODY)
    app[ADMIN] = AdminContext(context)
    add = app.router
    add.add_get("/admin", pages.overview)
    add.add_get("/admin/", pages.overview)
    add.add_get(auth.LOGIN, auth.login_form)
    add.add_post(auth.LOGIN, auth.login)
    add.add_post("/admin/logout", auth.logout)
    add.add_get("/admin/attention", pages.attention)
    add.add_get("/admin/lookup", pages.lookup_form)
    add.add_post("/admin/lookup", pages.lookup)
    add.add_get("/admin/subscribers/{id}", pages.subscriber)
    add.add_post("/admin/subscribers/{id}/resume", pages.resume)
    add.add_get("/admin/lessons", lessons.lessons)
    add.add_get("/admin/lessons/{sequence}/{day}", lessons.preview)
    add.add_get("/admin/lessons/{sequence}/{day}/email", lessons.preview_html)
    add.add_get("/admin/static/site.css", _site_css)
    add.add_static("/admin/static/", STATIC, append_version=False)
    return app


@dataclass(frozen=True)
class AdminListener:
    """The admin pages' runner when they listen; `failed` when their address was taken."""

    runner: web.AppRunner | None = None
    failed: bool = False

    async def close(self) -> None:
        """Stop listening (nothing to do when the pages never started)."""
        if self.runner is not None:
            await self.runner.cleanup()


async def start_admin(config: Config, context: WebContext | None) -> AdminListener:
    """Listen on admin.host:admin.port when an admin is configured; one log line either way."""
    admin = config.admin
    if not admin.enabled:
        log.info("admin pages off (admin.enabled is false)")
        return AdminListener()
    if not admin.password_hash:
        log.info(
            "admin pages off: no admin password hash ($DRG_ADMIN_PASSWORD_HASH, "
            "admin.password_hash_file or the admin_password_hash credential; "
            "make one with python run.py admin hash-password)"
        )
        return AdminListener()
    if context is None:
        log.info("admin pages off: they need the pages' parts, and web.enabled is false")
        return AdminListener()
    runner = web.AppRunner(create_admin_app(context), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, admin.host, admin.port).start()
    except OSError as err:
        await runner.cleanup()
        log.error(
            "cannot listen on %s:%d: %s (check admin.host and admin.port)",
            admin.host,
            admin.port,
            err.strerror or err,
        )
        return AdminListener(failed=True)
    log.info("admin pages on %s/admin/", admin.url)
    return AdminListener(runner)
