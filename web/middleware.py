"""Middleware: security headers on every response, and plain pages for bad links and URLs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from guide.errors import TokenError
from web.context import CONTEXT, context_of
from web.csrf import set_new_cookie

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No third-party anything: scripts and styles only from this origin, nothing framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@web.middleware
async def pages_first(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While a request is served, the dispatch pass waits and its database writes go first."""
    with context_of(request).foreground.request():
        return await handler(request)


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
    secure = request.app[CONTEXT].config.web.public_url.startswith("https://")
    set_new_cookie(request, response, secure)


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Plain pages for bad links and unknown URLs; nothing useful to an attacker."""
    context = context_of(request)
    try:
        return await handler(request)
    except TokenError as problem:
        if problem.expired:
            return context.message(
                request,
                "This link has expired",
                "For your safety, links stop working after a while. "
                "Every email we send has fresh links at the bottom.",
                status=410,
            )
        return context.message(
            request,
            "This link is not valid",
            "It may have been copied incompletely. Every email we send has working links "
            "at the bottom.",
            status=400,
        )
    except web.HTTPNotFound:
        return context.message(
            request, "Page not found", "There is nothing at this address.", status=404
        )
    except web.HTTPMethodNotAllowed:
        return context.message(
            request, "Not allowed", "This page cannot be used that way.", status=405
        )
