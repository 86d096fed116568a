"""CSRF protection by double-submit cookie: a form's token must match this browser's cookie."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

CSRF_COOKIE = "drg_csrf"
CSRF = web.RequestKey("csrf", str)
CSRF_NEW = web.RequestKey("csrf_new", bool)


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token, made on first use (the middleware then sets the cookie)."""
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


def set_new_cookie(request: web.Request, response: web.StreamResponse, secure: bool) -> None:
    """Set the CSRF cookie when this request made a new token."""
    if request.get(CSRF_NEW):
        response.set_cookie(
            CSRF_COOKIE, request[CSRF], httponly=True, samesite="Strict", secure=secure, path="/"
        )
