"""The signed link a page was opened with: who it points at, or a TokenError."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from guide.errors import TokenError
from guide.records import Subscriber
from web.context import context_of


async def load_link(
    request: web.Request, purpose: str, *, expires: bool = True, lifetime: timedelta | None = None
) -> tuple[Subscriber, Any]:
    """The subscriber a signed link points at, and the link's payload; TokenError if none."""
    context = context_of(request)
    payload = context.signer.load(
        purpose, request.match_info["token"], context.clock(), expires=expires, lifetime=lifetime
    )
    sid = payload[0] if isinstance(payload, list) and payload else payload
    sub = await context.store.get(sid) if isinstance(sid, int) else None
    if sub is None:
        raise TokenError(expired=True)  # the same answer as expiry: reveal nothing
    return sub, payload


async def subscriber_from_link(
    request: web.Request, purpose: str, *, expires: bool = True, lifetime: timedelta | None = None
) -> Subscriber:
    """The subscriber a signed link points at; TokenError if none."""
    sub, _ = await load_link(request, purpose, expires=expires, lifetime=lifetime)
    return sub


def local_time_text(instant: datetime | None, zone: str) -> str:
    """'on Monday 3 March at 08:00 (Europe/Berlin time)', or '' for no time."""
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(zone))
    return f"on {local:%A %-d %B} at {local:%H:%M} ({zone.replace('_', ' ')} time)"
