"""Sign-up: the form, the double opt-in email, and the confirmation page."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiohttp import web

from guide.errors import TokenError
from guide.records import NewSubscriber, Subscriber
from guide.text import (
    ValidationError,
    check_email,
    check_name,
    check_send_time,
    check_timezone,
)
from scheduler import subscribers as life
from web.context import WebContext, context_of
from web.csrf import check_csrf
from web.links import local_time_text, subscriber_from_link
from web.sequences import choices

log = logging.getLogger(__name__)

# Sends outlive the request that started them; keep references so they are not collected.
_background: set[asyncio.Task[None]] = set()


async def home(request: web.Request) -> web.StreamResponse:
    """The front page is the sign-up form."""
    raise web.HTTPFound("/subscribe")


def _form_values(form: Any | None = None, *, discreet: bool = True) -> dict[str, Any]:
    """The form's fields: posted, or the blank form's (`discreet`: its starting state)."""
    if form is None:
        return {
            "email": "",
            "name": "",
            "timezone": "UTC",
            "browser_timezone": "",
            "send_time": "08:00",
            "discreet": discreet,
            "sequence": "",
            "country": "",
        }
    timezone = str(form.get("timezone", "UTC"))
    return {
        "email": str(form.get("email", ""))[:320],
        "name": str(form.get("name", ""))[:100],
        "timezone": timezone,
        "browser_timezone": timezone,
        "send_time": str(form.get("send_time", ""))[:5],
        "discreet": form.get("discreet") == "yes",
        "sequence": str(form.get("sequence", ""))[:64],
        "country": str(form.get("country", ""))[:8],
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
        choices=choices(context.sequences(), sequence.id),
        chosen=form["sequence"] or sequence.id,
        discreet_name=context.config.sender.discreet_name,
    )


async def subscribe_form(request: web.Request) -> web.StreamResponse:
    """The sign-up form."""
    discreet = context_of(request).config.web.discreet_default
    return _subscribe_page(request, _form_values(discreet=discreet), {})


def client_address(request: web.Request) -> str:
    """The client's IP, from the proxy's X-Forwarded-For only when configured to trust it."""
    if context_of(request).config.web.trust_forwarded_for:
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
        "name": (
            check_name,
            "Your first name must be one line of at most 100 characters, without @, <, > or =?.",
        ),
        "timezone": (check_timezone, "Choose your timezone from the list."),
        "send_time": (check_send_time, "Enter a time like 08:30."),
    }
    for field, (check, message) in checks.items():
        try:
            cleaned[field] = check(values[field])
        except ValidationError:
            errors[field] = message
    # A form from before the choice existed sends none: the default, as it said then.
    sequence_id = values["sequence"] or context.config.default_sequence
    sequences = context.sequences()
    if sequence_id not in sequences:
        errors["sequence"] = "Choose one of the readings listed."
    # A form without the field (from before it existed, or a script): the timezone's country.
    country = (
        context.footers.choice(values["country"])
        if "country" in form
        else context.footers.for_zone(cleaned.get("timezone", ""))
    )
    if country is None:
        errors["country"] = "Choose where you live from the list, or “Somewhere else”."
    if errors:
        return _subscribe_page(request, values, errors, status=400)
    new = NewSubscriber(
        email=cleaned["email"],
        sequence_id=sequence_id,
        timezone=cleaned["timezone"],
        send_time=cleaned["send_time"],
        name=cleaned["name"],
        discreet=values["discreet"],
        country=country or "",
    )
    # Per-address limit: the answer stays the same, only the email is not sent again.
    if context.address_limit.allow(new.email):
        sub = await life.sign_up(
            context.store, new, now=context.clock(), actor="web", sequence_ids=sequences
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
        "way. Nothing else will be sent until you confirm with the link in it.",
        "It may take a few minutes. If you don't see it, look in your spam or junk folder.",
    )


async def _send_confirmation(context: WebContext, sub: Subscriber) -> None:
    try:
        sequence = context.sequences().get(sub.sequence_id, context.sequence)
        composed = context.composer.confirmation(sub, sequence, context.clock())
        connection = await context.transport.connect()
        try:
            result = await connection.send(composed.envelope)
        finally:
            await connection.close()
        if not result.delivered:
            log.warning("confirmation email for subscriber %d not sent: %s", sub.id, result)
    except Exception:
        log.exception("confirmation email for subscriber %d failed", sub.id)


async def _pending_from_link(request: web.Request) -> Subscriber:
    """The subscriber a confirmation link points at; TokenError once it can no longer confirm."""
    lifetime = timedelta(days=context_of(request).config.web.pending_days)
    sub = await subscriber_from_link(request, "confirm", lifetime=lifetime)
    if sub.status not in ("pending", "active", "paused"):
        raise TokenError(expired=True)
    return sub


def _settings_line(sub: Subscriber, sender_name: str) -> str:
    """The chosen time and mode in one line, so a reader sees what the form-filler chose."""
    zone = sub.timezone.replace("_", " ")
    mode = (
        f"Discreet mode is on: the sender shows as “{sender_name}” and subject lines say nothing "
        "about the topic."
        if sub.discreet
        else "Discreet mode is off: the sender's name and subject lines say what the emails are "
        "about."
    )
    return f"One email a day at {sub.send_time} ({zone} time). {mode}"


async def confirm_page(request: web.Request) -> web.StreamResponse:
    """GET (and HEAD) show a button and change nothing: mail security scanners open links."""
    context = context_of(request)
    sub = await _pending_from_link(request)
    if sub.status != "pending":
        return _confirmed(request, sub)
    return context.render(
        request,
        "confirm.html",
        action=request.path,
        settings=_settings_line(sub, context.config.sender.discreet_name),
        pending_days=context.config.web.pending_days,
    )


async def confirm(request: web.Request) -> web.StreamResponse:
    """Double opt-in, on the button press: activate; the first lesson goes at the next send time."""
    context = context_of(request)
    if not await check_csrf(request):
        return context.message(
            request,
            "Please try again",
            "This page was open for too long or came from another site. Open the link in the "
            "email again and press the button.",
            status=403,
        )
    sub = await _pending_from_link(request)
    if sub.status == "pending":
        sub = await life.confirm(context.store, sub, now=context.clock(), actor="web")
    return _confirmed(request, sub)


def _confirmed(request: web.Request, sub: Subscriber) -> web.Response:
    context = context_of(request)
    manage = context.composer.manage_url(sub.id, context.clock())
    first = local_time_text(sub.next_due_at, sub.timezone) if sub.next_due_at else None
    return context.message(
        request,
        "You're subscribed",
        f"Your first email arrives {first}." if first else "Your subscription is confirmed.",
        _settings_line(sub, context.config.sender.discreet_name)
        + " You can change this on the manage page.",
        "Every email has links to pause, change the time or stop. You can also keep this page's "
        "link to manage your emails.",
        link={"url": manage, "label": "Manage my emails"},
    )
