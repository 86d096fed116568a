"""Admin login and logout, and the middleware: headers, login required, CSRF on every POST."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from guide.passwords import PASSWORD_MAX, verify_password
from web.admin.context import SESSION, admin_of
from web.admin.session import SESSION_COOKIE
from web.csrf import check_csrf, set_new_cookie
from web.middleware import CSP

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN = "/admin/login"
# Reached without a session: the login form, and the stylesheet it uses.
OPEN_PATHS = (LOGIN, "/admin/static/")
# A lesson preview is the email's own HTML in a sandboxed frame of the preview page: its
# inline styles are allowed there, and only there.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers always; a session for every page but the login; CSRF on every POST."""
    context = admin_of(request)
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:  # redirects and aiohttp's own errors get them too
        _protect(request, exc, context.secure)
        raise
    _protect(request, response, context.secure)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = admin_of(request)
    if not request.path.startswith("/admin"):
        raise web.HTTPNotFound()
    session = context.session(request)
    if session is not None:
        request[SESSION] = session
    elif not request.path.startswith(OPEN_PATHS):
        if request.method == "GET":
            raise web.HTTPSeeOther(LOGIN)
        return context.message(
            request, "Signed out", "Your session has ended. Sign in again.", status=401
        )
    if request.method == "POST" and not await check_csrf(request):
        log.warning("admin form without a valid CSRF token refused: %s", request.path)
        return context.message(
            request,
            "Form expired",
            "This form could not be checked. Go back, reload the page and try again.",
            status=403,
        )
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return context.message(request, "Not found", "There is nothing here.", status=404)


def _protect(request: web.Request, response: web.StreamResponse, secure: bool) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cache-Control"] = "no-store"  # pages hold addresses: never kept by a cache
    set_new_cookie(request, response, secure)


async def login_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form (straight to the overview when already signed in)."""
    if request.get(SESSION) is not None:
        raise web.HTTPSeeOther("/admin/")
    return admin_of(request).render(request, "login.html", error="")


async def login(request: web.Request) -> web.StreamResponse:
    """Check the user name and password; a session cookie when they match."""
    context = admin_of(request)
    admin = context.admin
    client = request.remote or "unknown"
    if not context.client_limit.allow(client) or not context.total_limit.allow("all"):
        log.warning("admin sign-in refused: too many attempts (from %s)", client)
        response = context.render(
            request,
            "login.html",
            status=429,
            error="Too many attempts. Wait an hour, then try again.",
        )
        response.headers["Retry-After"] = "3600"
        return response
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[: PASSWORD_MAX + 1]
    # The hash is checked even for a wrong name, so the time taken does not tell names apart;
    # in a thread, as scrypt takes a tenth of a second the pages and sends must not wait for.
    matches = await asyncio.to_thread(verify_password, password, admin.password_hash)
    name_ok = hmac.compare_digest(username.encode(), admin.username.encode())
    if not (matches and name_ok):
        log.warning("admin sign-in failed (from %s)", client)
        return context.render(
            request, "login.html", status=401, error="Wrong user name or password."
        )
    cookie = context.sessions.issue(admin.username, context.site.signer.secret, admin.password_hash)
    log.info("%s signed in (from %s)", admin.actor, client)
    response = web.HTTPSeeOther("/admin/")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(context.lifetime.total_seconds()),
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=context.secure,
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session: the cookie is removed and its id refused from now on."""
    context = admin_of(request)
    session = request[SESSION]
    context.sessions.revoke(session, context.lifetime)
    log.info("%s signed out", context.admin.actor)
    response = web.HTTPSeeOther(LOGIN)
    response.del_cookie(SESSION_COOKIE, path="/admin")
    raise response
