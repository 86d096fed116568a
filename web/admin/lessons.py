"""Admin lesson pages: each sequence as a table, each day previewed as the email in both modes."""

from __future__ import annotations

from email import policy
from email.parser import BytesHeaderParser

from aiohttp import web

from delivery.message import Recipient
from guide.lessons import Sequence
from web.admin.auth import PREVIEW_CSP
from web.admin.context import admin_of
from web.middleware import CSP

MODES = {"plain": False, "discreet": True}
# The sample reader of every preview: no real address, a short first name.
SAMPLE = ("reader@example.org", "Sam")


async def lessons(request: web.Request) -> web.StreamResponse:
    """Every sequence's days, and what `lessons check` finds wrong in the files now."""
    context = admin_of(request)
    sequences = context.site.sequences()
    error = context.site.library.error
    return context.render(
        request,
        "lessons.html",
        sequences=sorted(sequences.values(), key=lambda s: s.id),
        problems=[str(p) for p in error.problems] if error else [],
        default=context.site.config.default_sequence,
    )


def _chosen(request: web.Request) -> tuple[Sequence, int, str]:
    context = admin_of(request)
    sequence = context.site.sequences().get(request.match_info["sequence"])
    raw = request.match_info["day"]
    mode = request.query.get("mode", "plain")
    if sequence is None or not raw.isdigit() or mode not in MODES:
        raise web.HTTPNotFound()
    day = int(raw)
    if not 1 <= day <= len(sequence):
        raise web.HTTPNotFound()
    return sequence, day, mode


def _sample(request: web.Request) -> tuple[Sequence, int, str, bytes, str, str]:
    context = admin_of(request)
    sequence, day, mode = _chosen(request)
    lesson = sequence.lesson_on_day(day)
    recipient = Recipient(*SAMPLE, discreet=MODES[mode])
    composer = context.preview_composer()
    composed, readable = composer.sample(recipient, sequence, lesson, context.site.clock())
    return sequence, day, mode, composed.data, readable.html, readable.text


async def preview(request: web.Request) -> web.StreamResponse:
    """One day as the email: From, Subject, the HTML (in a sandboxed frame) and the text."""
    context = admin_of(request)
    sequence, day, mode, data, _html, text = _sample(request)
    headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
    response = context.render(
        request,
        "preview.html",
        sequence=sequence,
        day=day,
        mode=mode,
        lesson=sequence.lesson_on_day(day),
        sender=str(headers.get("From", "")),
        subject=str(headers.get("Subject", "")),
        text=text,
    )
    # This page, alone, may frame one of this site's pages: the email's HTML.
    response.headers["Content-Security-Policy"] = f"{CSP}; frame-src 'self'"
    return response


async def preview_html(request: web.Request) -> web.StreamResponse:
    """The email's HTML alone, for the preview page's frame (its own, narrower CSP)."""
    _sequence, _day, _mode, _data, html, _text = _sample(request)
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
