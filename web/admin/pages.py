"""Admin pages: the overview, who needs attention (with resume), lookup and one subscriber."""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from guide.errors import LifecycleError
from guide.records import Subscriber
from guide.redact import redact
from guide.schema import STATUSES
from guide.text import ValidationError, check_email
from scheduler import subscribers as life
from web.admin.chart import sent_chart
from web.admin.context import AdminContext, admin_of, mask
from web.admin.queries import (
    ATTENTION,
    LIST_LIMIT,
    by_sequence,
    needing_attention,
    sent_per_day,
    with_address,
)

log = logging.getLogger(__name__)


async def overview(request: web.Request) -> web.StreamResponse:
    """Subscribers by status and sequence, what is due, what was sent, failures, relay, database."""
    context = admin_of(request)
    page = context.site
    now = page.clock()
    report = await page.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    days = await sent_per_day(page.store, now)
    return context.render(
        request,
        "overview.html",
        report=report,
        statuses=[s for s in STATUSES if report["by_status"].get(s)],
        sequences=await by_sequence(page.store),
        sent_30d=sum(d.sent for d in days),
        chart=sent_chart(days),
        totals=dict(sorted(page.stats.totals.items())),
        relay=_relay(context),
        database=await _database(context),
        last_pass=_last_pass(context),
        lessons_error=page.library.error is not None,
    )


def _relay(context: AdminContext) -> str:
    stats = context.site.stats
    if stats.halted:
        return redact(f"halted: {stats.halted}")
    if stats.failing_since is None:
        return "ok" if stats.last_delivered else "ok (nothing sent yet by this process)"
    seconds = (context.site.clock() - stats.failing_since).total_seconds()
    return redact(f"every send failing for {seconds:.0f} s: {stats.last_error}")


async def _database(context: AdminContext) -> str:
    store = context.site.store
    try:
        answered = await store.ping()
    except Exception as err:  # shown, not raised: this page is where an outage is looked at
        return f"error: {type(err).__name__} ({store.dialect})"
    return f"ok ({store.dialect})" if answered else f"not answering ({store.dialect})"


def _last_pass(context: AdminContext) -> str:
    stats = context.site.stats
    if stats.last_tick is None:
        return "none yet in this process"
    ago = (context.site.clock() - stats.last_tick).total_seconds()
    running = "running" if context.site.scheduler_running() else "scheduler stopped"
    return (
        f"{ago:.0f} s ago, took {stats.last_tick_seconds:.2f} s "
        f"({stats.tick_count} since start; {running})"
    )


async def attention(request: web.Request) -> web.StreamResponse:
    """Held, bounced and undeliverable subscribers with their last reply, and a resume button."""
    context = admin_of(request)
    found = await needing_attention(context.site.store)
    now = context.site.clock()
    report = await context.site.store.report(now, now + timedelta(hours=1), now - timedelta(days=1))
    rows = {status: [(sub, _masked_reply(sub)) for sub in subs] for status, subs in found.items()}
    return context.render(
        request,
        "attention.html",
        groups=rows,
        counts={status: report["by_status"].get(status, 0) for status in ATTENTION},
        limit=LIST_LIMIT,
        notice=_notice(request),
    )


def _masked_reply(subscriber: Subscriber) -> str:
    # Relays quote the address in their reply; a list shows it masked, as the address itself.
    reply = redact(subscriber.last_error or "")
    if subscriber.email:
        reply = reply.replace(subscriber.email, mask(subscriber.email))
    return reply


def _notice(request: web.Request) -> str:
    done = request.query.get("done", "")
    return {"resumed": "Resumed: the next lesson goes at their next send time."}.get(done, "")


async def lookup_form(request: web.Request) -> web.StreamResponse:
    """The form to find a subscriber by exact address."""
    return admin_of(request).render(request, "lookup.html", address="", found=None, error="")


async def lookup(request: web.Request) -> web.StreamResponse:
    """Subscribers with exactly this address (a POST: the address stays out of URLs and history)."""
    context = admin_of(request)
    form = await request.post()
    address = str(form.get("address", "")).strip()[:320]
    try:
        address = check_email(address)
    except ValidationError as err:
        return context.render(
            request, "lookup.html", 400, address=address, found=None, error=err.message
        )
    found = await with_address(context.site.store, address)
    log.info("%s looked up an address: %d found", context.admin.actor, len(found))
    return context.render(request, "lookup.html", address=address, found=found, error="")


async def subscriber(request: web.Request) -> web.StreamResponse:
    """One subscriber: the record, the deliveries and the audit trail."""
    context = admin_of(request)
    found = await _subscriber(request)
    sent, events = await context.site.store.history(found.id)
    # Who looked at whose record is kept in the log (the audit trail records changes).
    log.info("%s viewed subscriber %d", context.admin.actor, found.id)
    return context.render(
        request,
        "subscriber.html",
        subscriber=found,
        reply=redact(found.last_error or ""),
        deliveries=sent,
        events=events,
        resumable=found.status in life.RESUMABLE,
        notice=_notice(request),
        error="",
    )


async def resume(request: web.Request) -> web.StreamResponse:
    """Resume a held, bounced, undeliverable or paused subscriber; the admin is the actor."""
    context = admin_of(request)
    found = await _subscriber(request)
    now = context.site.clock()
    try:
        await life.resume(
            context.site.store, found, context.site.sequences(), now=now, actor=context.admin.actor
        )
    except LifecycleError as err:
        sent, events = await context.site.store.history(found.id)
        return context.render(
            request,
            "subscriber.html",
            409,
            subscriber=found,
            reply=redact(found.last_error or ""),
            deliveries=sent,
            events=events,
            resumable=False,
            notice="",
            error=str(err),
        )
    log.info("%s resumed subscriber %d (was %s)", context.admin.actor, found.id, found.status)
    back = "/admin/attention" if request.query.get("from") == "attention" else None
    raise web.HTTPSeeOther(f"{back or f'/admin/subscribers/{found.id}'}?done=resumed")


async def _subscriber(request: web.Request) -> Subscriber:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    found = await admin_of(request).site.store.get(int(raw))
    if found is None:
        raise web.HTTPNotFound()
    return found
