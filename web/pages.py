"""Sign-up pages (subscribe, confirm) and what every page shares: link checks, error pages."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from delivery.message import Personal, Recipient
from delivery.transports import Envelope
from guide.records import NewSubscriber, Subscriber
from guide.tokens import TokenError
from guide.validate import (
    ValidationError,
    check_email,
    check_name,
    check_send_time,
    check_timezone,
)
from scheduler import subscribers as life
from web.app import CONTEXT, Handler, WebContext, check_csrf

log = logging.getLogger(__name__)

# Sends outlive the request that started them; keep references so they are not collected.
_background: set[asyncio.Task[None]] = set()


class LinkProblem(Exception):
    """A token that is tampered with, expired, or points at nobody."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired


def context_of(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


async def load_link(
    request: web.Request, purpose: str, *, expires: bool = True, lifetime: timedelta | None = None
) -> tuple[Subscriber, Any]:
    """The subscriber a signed link points at, and the link's payload; LinkProblem if none."""
    parts = context_of(request).parts
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
    return sub, payload


async def subscriber_from_link(
    request: web.Request, purpose: str, *, expires: bool = True, lifetime: timedelta | None = None
) -> Subscriber:
    """The subscriber a signed link points at; LinkProblem if none."""
    sub, _ = await load_link(request, purpose, expires=expires, lifetime=lifetime)
    return sub


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Plain pages for bad links and unknown URLs; nothing useful to an attacker."""
    context = context_of(request)
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
    context = context_of(request)
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
    if context_of(request).parts.config.web.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def subscribe(request: web.Request) -> web.StreamResponse:
    """Sign up: validate, create or refresh a pending subscriber, send the opt-in email."""
    context = context_of(request)
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
        sub = await life.sign_up(
            context.parts.store, new, now=context.parts.dispatcher.clock(), actor="web"
        )
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
    context = context_of(request)
    parts = context.parts
    lifetime = timedelta(days=parts.config.web.pending_days)
    sub = await subscriber_from_link(request, "confirm", lifetime=lifetime)
    now = parts.dispatcher.clock()
    if sub.status == "pending":
        sub = await life.confirm(parts.store, sub, now=now, actor="web")
    elif sub.status not in ("active", "paused"):
        raise LinkProblem(expired=True)
    manage = parts.signer.url("manage", "manage", sub.id, now)
    first = local_time_text(sub.next_due_at, sub.timezone) if sub.next_due_at else None
    return context.message(
        request,
        "You're subscribed",
        f"Your first email arrives {first}." if first else "Your subscription is confirmed.",
        "Every email has links to pause, change the time or stop. You can also keep this page's "
        "link to manage your emails.",
        link={"url": manage, "label": "Manage my emails"},
    )


def local_time_text(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(zone))
    return f"on {local:%A %-d %B} at {local:%H:%M} ({zone.replace('_', ' ')} time)"
