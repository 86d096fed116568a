"""The aiohttp application: which URL goes to which handler, and the middleware around them."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from web import account, ops, signup
from web.context import CONTEXT, WebContext
from web.middleware import error_pages, pages_first, security_headers

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024


def create_app(context: WebContext) -> web.Application:
    """The application with every route."""
    app = web.Application(middlewares=[pages_first, security_headers], client_max_size=MAX_BODY)
    app[CONTEXT] = context
    app.router.add_get("/", signup.home)
    app.router.add_get("/subscribe", signup.subscribe_form)
    app.router.add_post("/subscribe", signup.subscribe)
    app.router.add_get("/confirm/{token}", signup.confirm_page)
    app.router.add_post("/confirm/{token}", signup.confirm)
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
    app.middlewares.append(error_pages)
    return app
