"""Subscriber pages: subscribe, confirm, manage, one-click unsubscribe, read online."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from delivery.message import Personal, Recipient
from delivery.transports import Envelope
from guide.store import NewSubscriber, Subscriber
from guide.tokens import TokenError
from guide.validate import (
    ValidationError,
    check_email,
    check_name,
    check_send_time,
    check_timezone,
)
from scheduler import subscribers as life
from scheduler.dispatch import CLOSING_ID
from web.app import CONTEXT, Handler, WebContext, check_csrf

log = logging.getLogger(__name__)

STATUS_TEXT = {
    "active": "receiving emails",
    "paused": "paused: no emails until you resume",
    "completed": "finished: you have received every lesson",
    "held": "on hold: your email provider refused our last message",
    "bounced": "stopped: your email provider says this address does not exist",
    "undeliverable": "stopped: our emails could not reach you for several days",
}
NOTICES = {
    "pause": "Your emails are paused. Nothing will be sent until you resume.",
    "resume": "Your emails will start again at your next email time.",
    "settings": "Your settings are saved.",
    "repeat": "Your most recent lesson will be sent again at your next email time.",
}
# Sends outlive the request that started them; keep references so they are not collected.
_background: set[asyncio.Task[None]] = set()


class LinkProblem(Exception):
    """A token that is tampered with, expired, or points at nobody."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired


def _context(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


async def _subscriber(
    request: web.Request, purpose: str, *, expires: bool = True, lifetime: timedelta | None = None
) -> Subscriber:
    context = _context(request)
    parts = context.parts
    try:
        payload = parts.signer.load(
            purpose,
            request.match_info["token"],
            parts.dispatcher.clock(),
            expires=expires,
            lifetime=lifetime,
        )
    except TokenError as err:
        raise LinkProblem(err.expired) from err
    sid = payload[0] if isinstance(payload, list) and payload else payload
    sub = await parts.store.get(sid) if isinstance(sid, int) else None
    if sub is None:
        raise LinkProblem(expired=True)  # the same answer as expiry: reveal nothing
    return sub


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Plain pages for bad links and unknown URLs; nothing useful to an attacker."""
    context = _context(request)
    try:
        return await handler(request)
    except LinkProblem as problem:
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


async def home(request: web.Request) -> web.StreamResponse:
    """The front page is the sign-up form."""
    raise web.HTTPFound("/subscribe")


def _form_values(form: Any | None = None) -> dict[str, Any]:
    if form is None:
        return {
            "email": "",
            "name": "",
            "timezone": "UTC",
            "browser_timezone": "",
            "send_time": "08:00",
            "discreet": False,
        }
    timezone = str(form.get("timezone", "UTC"))
    return {
        "email": str(form.get("email", ""))[:320],
        "name": str(form.get("name", ""))[:100],
        "timezone": timezone,
        "browser_timezone": timezone,
        "send_time": str(form.get("send_time", ""))[:5],
        "discreet": form.get("discreet") == "yes",
    }


def _subscribe_page(
    request: web.Request, form: dict[str, Any], errors: dict[str, str], status: int = 200
) -> web.Response:
    context = _context(request)
    sequence = context.sequence
    return context.render(
        request,
        "subscribe.html",
        status,
        form=form,
        errors=errors,
        zones=context.zones,
        sequence_title=sequence.title,
        sequence_description=sequence.description,
        total_days=len(sequence),
        discreet_name=context.parts.config.sender.discreet_name,
    )


async def subscribe_form(request: web.Request) -> web.StreamResponse:
    """The sign-up form."""
    return _subscribe_page(request, _form_values(), {})


def client_address(request: web.Request) -> str:
    """The client's IP, from the proxy's X-Forwarded-For only when configured to trust it."""
    if _context(request).parts.config.web.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def subscribe(request: web.Request) -> web.StreamResponse:
    """Sign up: validate, create or refresh a pending subscriber, send the opt-in email."""
    context = _context(request)
    if not await check_csrf(request):
        return context.message(
            request,
            "Please try again",
            "This form was open for too long or came from another site. Reload the page and "
            "submit it again.",
            status=403,
        )
    if not context.client_limit.allow(client_address(request)):
        return context.message(
            request,
            "Please wait a little",
            "There have been too many sign-up attempts from this connection. Try again in an hour.",
            status=429,
        )
    form = await request.post()
    values = _form_values(form)
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    checks = {
        "email": (check_email, "Enter an email address, like name@example.com."),
        "name": (check_name, "Your first name must be one line of at most 100 characters."),
        "timezone": (check_timezone, "Choose your timezone from the list."),
        "send_time": (check_send_time, "Enter a time like 08:30."),
    }
    for field, (check, message) in checks.items():
        try:
            cleaned[field] = check(values[field])
        except ValidationError:
            errors[field] = message
    if errors:
        return _subscribe_page(request, values, errors, status=400)
    new = NewSubscriber(
        email=cleaned["email"],
        sequence_id=context.parts.config.default_sequence,
        timezone=cleaned["timezone"],
        send_time=cleaned["send_time"],
        name=cleaned["name"],
        discreet=values["discreet"],
    )
    # Per-address limit: the answer stays the same, only the email is not sent again.
    if context.address_limit.allow(new.email):
        sub = await _prepare_pending(context, new)
        if sub is not None:
            task = asyncio.create_task(_send_confirmation(context, sub))
            _background.add(task)
            task.add_done_callback(_background.discard)
    # The same answer whether or not the address is known: no enumeration.
    return context.message(
        request,
        "Check your inbox",
        "If this address can receive our emails, a message asking you to confirm is on its "
        "way. Nothing else will be sent until you click the link in it.",
        "It may take a few minutes. If you don't see it, look in your spam or junk folder.",
    )


async def _prepare_pending(context: WebContext, new: NewSubscriber) -> Subscriber | None:
    """The subscriber to send a confirmation to, or None if they are already receiving."""
    parts = context.parts
    now = parts.dispatcher.clock()
    sub, created = await life.add(parts.store, new, now=now, actor="web", status="pending")
    if created or sub.status == "pending":
        if not created:
            # A second sign-up: keep the latest choices, and restart the pending period, or the
            # purge could delete the row while the link just sent is still valid.
            return await parts.store.change(
                sub.id,
                now=now,
                actor="web",
                reason="signed up again",
                timezone=new.timezone,
                send_time=new.send_time,
                discreet=new.discreet,
                name=new.name,
                created_at=now,
            )
        return sub
    # Already receiving: nothing to send. Erased: we promised never to email it again.
    # Bounced: the address does not exist.
    if sub.status in ("active", "paused", "erased", "bounced"):
        return None
    # Coming back after leaving, finishing or an erasure: start afresh once they confirm.
    refreshed = await parts.store.change(
        sub.id,
        now=now,
        actor="web",
        status="pending",
        reason="signed up again",
        email=new.email,
        name=new.name,
        timezone=new.timezone,
        send_time=new.send_time,
        discreet=new.discreet,
        generation=sub.generation + 1,
        repeats=0,
        next_due_at=None,
        attempts=0,
        first_failure_at=None,
        last_error=None,
        created_at=now,
        confirmed_at=None,
    )
    return refreshed


async def _send_confirmation(context: WebContext, sub: Subscriber) -> None:
    parts = context.parts
    now = parts.dispatcher.clock()
    try:
        prepared = parts.factory.prepare_confirm(context.sequence, parts.config.web.pending_days)
        personal = Personal(
            message_id=make_msgid(domain=parts.config.sender.domain),
            unsubscribe_url=parts.signer.url("unsubscribe", "unsubscribe", sub.id, now),
            action_url=parts.signer.url("confirm", "confirm", sub.id, now),
        )
        # Always the discreet variant: whoever filled in the form may not be the person who
        # reads this inbox, so the one email sent before consent names nothing.
        recipient = Recipient(sub.email or "", sub.name, discreet=True)
        data = parts.factory.build(prepared, recipient, personal, now)
        connection = await parts.transport.connect()
        try:
            result = await connection.send(
                Envelope(parts.config.sender.address, recipient.email, data)
            )
        finally:
            await connection.close()
        if not result.delivered:
            log.warning("confirmation email for subscriber %d not sent: %s", sub.id, result)
    except Exception:
        log.exception("confirmation email for subscriber %d failed", sub.id)


async def confirm(request: web.Request) -> web.StreamResponse:
    """Double opt-in: activate; the first lesson goes at the next send time."""
    context = _context(request)
    parts = context.parts
    lifetime = timedelta(days=parts.config.web.pending_days)
    sub = await _subscriber(request, "confirm", lifetime=lifetime)
    now = parts.dispatcher.clock()
    if sub.status == "pending":
        sub = await life.confirm(parts.store, sub, now=now, actor="web")
    elif sub.status not in ("active", "paused"):
        raise LinkProblem(expired=True)
    manage = parts.signer.url("manage", "manage", sub.id, now)
    first = _local(sub.next_due_at, sub.timezone) if sub.next_due_at else None
    return context.message(
        request,
        "You're subscribed",
        f"Your first email arrives {first}." if first else "Your subscription is confirmed.",
        "Every email has links to pause, change the time or stop. You can also keep this page's "
        "link to manage your emails.",
        link={"url": manage, "label": "Manage my emails"},
    )


def _local(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(zone))
    return f"on {local:%A %-d %B} at {local:%H:%M} ({zone.replace('_', ' ')} time)"


async def manage(request: web.Request) -> web.StreamResponse:
    """Everything a subscriber can change, on one page."""
    context = _context(request)
    parts = context.parts
    sub = await _subscriber(request, "manage")
    if sub.status in ("pending", "unsubscribed", "erased"):
        raise LinkProblem(expired=True)
    now = parts.dispatcher.clock()
    recorded = (await parts.store.progress([sub.id]))[sub.id]
    sent = len([x for x in recorded if x != CLOSING_ID])
    sequence = parts.library.current().get(sub.sequence_id) or context.sequence
    token = request.match_info["token"]
    can_resume = sub.status == "paused" or len(recorded) < len(sequence)
    return context.render(
        request,
        "manage.html",
        subscriber=sub,
        status_text=STATUS_TEXT.get(sub.status, sub.status),
        sent=sent,
        total_days=len(sequence),
        next_local=_local(sub.next_due_at, sub.timezone) if sub.status == "active" else "",
        can_resume=can_resume,
        base=f"/manage/{token}",
        export_url="/export/" + parts.signer.token("export", sub.id, now),
        erase_url="/erase/" + parts.signer.token("erase", sub.id, now),
        unsubscribe_url="/unsubscribe/" + parts.signer.token("unsubscribe", sub.id, now),
        notice=NOTICES.get(request.query.get("done", ""), ""),
        zones=context.zones,
        discreet_name=parts.config.sender.discreet_name,
    )


async def manage_action(request: web.Request) -> web.StreamResponse:
    """Pause, resume, settings or repeat; then back to the manage page."""
    context = _context(request)
    parts = context.parts
    action = request.match_info["action"]
    if action not in NOTICES:
        raise web.HTTPNotFound()
    sub = await _subscriber(request, "manage")
    if not await check_csrf(request):
        return context.message(
            request,
            "Please try again",
            "This form expired. Go back, reload the page and try again.",
            status=403,
        )
    now = parts.dispatcher.clock()
    sequences = parts.library.current()
    try:
        if action == "pause":
            await life.pause(parts.store, sub, now=now, actor="web")
        elif action == "resume":
            await life.resume(parts.store, sub, sequences, now=now, actor="web")
        elif action == "repeat":
            await life.repeat(parts.store, sub, sequences, now=now, actor="web")
        else:
            form = await request.post()
            try:
                timezone = check_timezone(str(form.get("timezone", "")))
                send_time = check_send_time(str(form.get("send_time", "")))
            except ValidationError as err:
                return context.message(
                    request,
                    "Please check your settings",
                    err.message,
                    status=400,
                    link={"url": f"/manage/{request.match_info['token']}", "label": "Back"},
                )
            await life.reschedule(
                parts.store,
                sub,
                sequences,
                now=now,
                actor="web",
                timezone=timezone,
                send_time=send_time,
                discreet=form.get("discreet") == "yes",
            )
    except life.LifecycleError as err:
        return context.message(
            request,
            "That did not change anything",
            str(err),
            status=409,
            link={"url": f"/manage/{request.match_info['token']}", "label": "Back"},
        )
    raise web.HTTPSeeOther(f"/manage/{request.match_info['token']}?done={action}")


async def export(request: web.Request) -> web.StreamResponse:
    """Download everything held about this subscriber (GDPR access), as JSON."""
    context = _context(request)
    sub = await _subscriber(request, "export")
    if not await check_csrf(request):
        return context.message(request, "Please try again", "This form expired.", status=403)
    data = await life.export_data(context.parts.store, sub)
    return web.Response(
        text=json.dumps(data, indent=2, default=str),
        content_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


async def erase(request: web.Request) -> web.StreamResponse:
    """Erase personal data and history; keep only the hash that blocks further email."""
    context = _context(request)
    sub = await _subscriber(request, "erase")
    if not await check_csrf(request):
        return context.message(request, "Please try again", "This form expired.", status=403)
    form = await request.post()
    if form.get("confirm") != "yes":
        return context.message(
            request,
            "Nothing was erased",
            "Tick the box to confirm, then press the button again.",
            status=400,
        )
    await context.parts.store.erase(sub.id, now=context.parts.dispatcher.clock(), actor="web")
    return context.message(
        request,
        "Your data is erased",
        "Your name, address and history are gone, and you will not receive any more emails.",
    )


async def unsubscribe_page(request: web.Request) -> web.StreamResponse:
    """GET shows a button and changes nothing: mail scanners follow links."""
    context = _context(request)
    sub = await _subscriber(request, "unsubscribe", expires=False)
    manage_url = ""
    if sub.status in ("active", "paused"):
        manage_url = context.parts.signer.url(
            "manage", "manage", sub.id, context.parts.dispatcher.clock()
        )
    return context.render(request, "unsubscribe.html", action=request.path, manage_url=manage_url)


async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """RFC 8058 one-click: a POST with no cookie stops the emails; 200, no redirect."""
    context = _context(request)
    await request.post()  # List-Unsubscribe=One-Click, urlencoded or multipart
    sub = await _subscriber(request, "unsubscribe", expires=False)
    await life.unsubscribe(
        context.parts.store, sub, now=context.parts.dispatcher.clock(), actor="web"
    )
    return context.message(
        request,
        "You are unsubscribed",
        "You will not receive any more emails from us. Thank you for the time you gave yourself.",
    )


async def lesson(request: web.Request) -> web.StreamResponse:
    """Read a lesson online: the same HTML as the email."""
    context = _context(request)
    parts = context.parts
    sub = await _subscriber(request, "lesson")
    try:
        payload = parts.signer.load("lesson", request.match_info["token"], parts.dispatcher.clock())
        lesson_id = str(payload[1])
    except (TokenError, IndexError, TypeError) as err:
        raise LinkProblem(expired=False) from err
    sequence = parts.library.current().get(sub.sequence_id)
    position = sequence.positions.get(lesson_id) if sequence else None
    if sequence is None or position is None or sub.status in ("erased", "pending"):
        raise LinkProblem(expired=True)
    now = parts.dispatcher.clock()
    prepared = parts.factory.prepare_lesson(sequence, sequence.lessons[position])
    personal = Personal(
        message_id="",
        unsubscribe_url=parts.signer.url("unsubscribe", "unsubscribe", sub.id, now),
        manage_url=parts.signer.url("manage", "manage", sub.id, now),
        # The public URL, as in the email: behind a proxy request.url is the internal one.
        online_url=f"{parts.config.web.public_url}/lesson/{request.match_info['token']}",
    )
    page, _ = parts.factory.readable(
        prepared, Recipient(sub.email or "", sub.name, sub.discreet), personal
    )
    exit_link = (
        f'<a href="{parts.config.web.quick_exit_url}" data-quick-exit rel="noreferrer" '
        'style="position:fixed;top:12px;right:12px;background:#8a2f2a;color:#fff;padding:8px 14px;'
        'border-radius:4px;font:bold 16px Helvetica,Arial,sans-serif;text-decoration:none;">'
        'Quick exit</a><script src="/static/site.js" defer></script>'
    )
    page = page.replace(
        '<body style="margin:0;padding:0;background-color:#f4f1ec;">',
        '<body style="margin:0;padding:0;background-color:#f4f1ec;">' + exit_link,
        1,
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        # Email HTML carries inline styles by design; allow exactly those, and our script.
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "script-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        },
    )
