"""A subscriber's own pages: manage, export, erase, one-click unsubscribe, read online."""

from __future__ import annotations

import json
import re

from aiohttp import web

from guide.errors import LifecycleError, TokenError
from guide.progress import finished
from guide.text import ValidationError, check_send_time, check_timezone
from scheduler import subscribers as life
from web.context import context_of
from web.csrf import check_csrf
from web.links import load_link, local_time_text, subscriber_from_link
from web.sequences import choices

_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
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
    "sequence": "Your readings are changed. What you received of each is kept.",
}


async def manage(request: web.Request) -> web.StreamResponse:
    """Everything a subscriber can change, on one page."""
    context = context_of(request)
    signer = context.signer
    sub = await subscriber_from_link(request, "manage")
    if sub.status in ("pending", "unsubscribed", "erased"):
        raise TokenError(expired=True)
    now = context.clock()
    recorded = (await context.store.progress([sub.id]))[sub.id]
    sequences = context.sequences()
    sequence = sequences.get(sub.sequence_id) or context.sequence
    token = request.match_info["token"]
    can_resume = sub.status == "paused" or not finished(sequence, recorded)
    readings = choices(sequences, sub.sequence_id, recorded)
    return context.render(
        request,
        "manage.html",
        subscriber=sub,
        status_text=STATUS_TEXT.get(sub.status, sub.status),
        # Only this sequence's lessons: after a switch the others' are kept but not counted here.
        sent=next((c.received for c in readings if c.id == sequence.id), 0),
        choices=readings,
        total_days=len(sequence),
        next_local=local_time_text(sub.next_due_at, sub.timezone) if sub.status == "active" else "",
        can_resume=can_resume,
        base=f"/manage/{token}",
        export_url="/export/" + signer.token("export", sub.id, now),
        erase_url="/erase/" + signer.token("erase", sub.id, now),
        unsubscribe_url="/unsubscribe/" + signer.token("unsubscribe", sub.id, now),
        notice=NOTICES.get(request.query.get("done", ""), ""),
        zones=context.zones,
        discreet_name=context.config.sender.discreet_name,
        # Not chosen yet (signed up before the choice): offer the timezone's country.
        country=sub.country or context.footers.for_zone(sub.timezone),
    )


async def manage_action(request: web.Request) -> web.StreamResponse:
    """Pause, resume, settings, repeat or another sequence; then back to the manage page."""
    context = context_of(request)
    store = context.store
    action = request.match_info["action"]
    if action not in NOTICES:
        raise web.HTTPNotFound()
    sub = await subscriber_from_link(request, "manage")
    if not await check_csrf(request):
        return context.message(
            request,
            "Please try again",
            "This form expired. Go back, reload the page and try again.",
            status=403,
        )
    now = context.clock()
    sequences = context.sequences()
    try:
        if action == "pause":
            await life.pause(store, sub, now=now, actor="web")
        elif action == "resume":
            await life.resume(store, sub, sequences, now=now, actor="web")
        elif action == "repeat":
            await life.repeat(store, sub, sequences, now=now, actor="web")
        elif action == "sequence":
            sequence_id = str((await request.post()).get("sequence", ""))[:64]
            if sequence_id not in sequences:
                return context.message(
                    request,
                    "Please choose your readings",
                    "Choose one of the readings listed.",
                    status=400,
                    link={"url": f"/manage/{request.match_info['token']}", "label": "Back"},
                )
            await life.switch_sequence(store, sub, sequences, sequence_id, now=now, actor="web")
        else:
            form = await request.post()
            # No field (an older page still open): the country stays as it is.
            country = context.footers.choice(str(form.get("country", ""))[:8])
            try:
                timezone = check_timezone(str(form.get("timezone", "")))
                send_time = check_send_time(str(form.get("send_time", "")))
                if country is None:
                    raise ValidationError("country", "Choose where you live from the list.")
            except ValidationError as err:
                return context.message(
                    request,
                    "Please check your settings",
                    err.message,
                    status=400,
                    link={"url": f"/manage/{request.match_info['token']}", "label": "Back"},
                )
            await life.reschedule(
                store,
                sub,
                sequences,
                now=now,
                actor="web",
                timezone=timezone,
                send_time=send_time,
                discreet=form.get("discreet") == "yes",
                country=country if "country" in form else None,
            )
    except LifecycleError as err:
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
    context = context_of(request)
    sub = await subscriber_from_link(request, "export")
    if not await check_csrf(request):
        return context.message(request, "Please try again", "This form expired.", status=403)
    data = await life.export_data(context.store, sub)
    return web.Response(
        text=json.dumps(data, indent=2, default=str),
        content_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


async def erase(request: web.Request) -> web.StreamResponse:
    """Erase personal data and history; keep only the hash that blocks further email."""
    context = context_of(request)
    sub = await subscriber_from_link(request, "erase")
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
    await context.store.erase(sub.id, now=context.clock(), actor="web")
    return context.message(
        request,
        "Your data is erased",
        "Your name, address and history are gone, and you will not receive any more emails.",
    )


async def unsubscribe_page(request: web.Request) -> web.StreamResponse:
    """GET shows a button and changes nothing: mail scanners follow links."""
    context = context_of(request)
    sub = await subscriber_from_link(request, "unsubscribe", expires=False)
    manage_url = ""
    if sub.status in ("active", "paused"):
        manage_url = context.composer.manage_url(sub.id, context.clock())
    return context.render(request, "unsubscribe.html", action=request.path, manage_url=manage_url)


async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """RFC 8058 one-click: a POST with no cookie stops the emails; 200, no redirect."""
    context = context_of(request)
    await request.post()  # List-Unsubscribe=One-Click, urlencoded or multipart
    sub = await subscriber_from_link(request, "unsubscribe", expires=False)
    await life.unsubscribe(context.store, sub, now=context.clock(), actor="web")
    return context.message(
        request,
        "You are unsubscribed",
        "You will not receive any more emails from us. Thank you for the time you gave yourself.",
    )


async def lesson(request: web.Request) -> web.StreamResponse:
    """Read a lesson online: the same HTML as the email."""
    context = context_of(request)
    config = context.config
    sub, payload = await load_link(request, "lesson")
    if not isinstance(payload, list) or len(payload) != 2:
        raise TokenError(expired=False)
    ref = str(payload[1])
    sequence = context.sequences().get(sub.sequence_id)
    position = None
    if sequence is not None:
        lesson_id = context.signer.find_lesson(ref, sequence.positions)
        # Links sent before 2026-12-02 carry the lesson id itself; they keep working until
        # they expire (links.lifetime_days), and then this fallback can go.
        position = sequence.positions.get(lesson_id or ref)
    if sequence is None or position is None or sub.status in ("erased", "pending"):
        raise TokenError(expired=True)
    # The public URL, as in the email: behind a proxy request.url is the internal one.
    online_url = f"{config.web.public_url}/lesson/{request.match_info['token']}"
    lesson = sequence.lessons[position]
    page = context.composer.online(sub, sequence, lesson, context.clock(), online_url).html
    exit_link = (
        f'<a href="{config.web.quick_exit_url}" data-quick-exit rel="noreferrer" '
        'style="position:fixed;top:12px;right:12px;background:#8a2f2a;color:#fff;padding:8px 14px;'
        'border-radius:4px;font:bold 16px Helvetica,Arial,sans-serif;text-decoration:none;">'
        'Quick exit</a><script src="/static/site.js" defer></script>'
    )
    # After the opening <body …> tag, whatever the email layout's attributes are.
    page = _BODY_TAG.sub(lambda m: m.group(0) + exit_link, page, count=1)
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
