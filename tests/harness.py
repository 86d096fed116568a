"""Shared test wiring: a movable clock and a service built on a real SQLite file."""

from __future__ import annotations

import dataclasses
import email.utils
import os
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from delivery.transports import Transport
from guide.config import Config, DispatchConfig
from guide.records import NewSubscriber, email_hash
from guide.schema import subscribers
from guide.store import Store
from scheduler import subscribers as life
from wiring import Parts, build

REPO = Path(__file__).resolve().parent.parent
LESSONS = REPO / "lessons"
# A strong link-signing key (43 characters of base64url): weak ones are refused everywhere.
LINK_SECRET = "rDEvvj4wuomh7-NRmg5jmpZ6W7BInB10vYF3pYqeP4c"
OTHER_LINK_SECRET = "BfQEUqGn3kolacVE91ZcwEc-Rhxr91uPW4iqN_jT3Q0"


class Clock:
    """The injected clock: time moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def config_for(tmp_path: Path, *, lessons: Path = LESSONS, **dispatch: Any) -> Config:
    """A configuration on a fresh state directory in tmp_path."""
    settings = dataclasses.replace(DispatchConfig(), **dispatch)
    return Config(
        state_dir=tmp_path / "state",
        lessons_dir=lessons,
        maildir_path=tmp_path / "state" / "outbox",
        dispatch=settings,
        link_secret=LINK_SECRET,
    )


async def make_parts(config: Config, clock: Clock, transport: Transport) -> Parts:
    """Build the service parts with the injected clock and transport."""
    return await build(config, clock=clock, transport=transport)


async def add_many(
    parts: Parts, people: list[tuple[str, str, str]], now: datetime, **extra: Any
) -> None:
    """Add (email, timezone, HH:MM) subscribers as active."""
    for address, zone, at in people:
        new = NewSubscriber(
            email=address, sequence_id="no-contact", timezone=zone, send_time=at, **extra
        )
        await life.add(parts.store, new, now=now, actor="test")


async def next_due(parts: Parts) -> datetime | None:
    """The earliest next_due_at of any active subscriber (to jump the clock to it)."""
    query = (
        select(subscribers.c.next_due_at)
        .where(subscribers.c.status == "active", subscribers.c.next_due_at.is_not(None))
        .order_by(subscribers.c.next_due_at)
        .limit(1)
    )
    async with parts.store.engine.connect() as conn:
        value = (await conn.execute(query)).scalar()
    assert value is None or isinstance(value, datetime)
    return value


_DAY = re.compile(rb"Day (\d+) of (\d+)")
_DATE = re.compile(rb"^Date: (.+?)\r$", re.M)
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)\r$", re.M)


def day_of(data: bytes) -> int | None:
    """The 'Day N' of a lesson email, None for the closing email."""
    match = _DAY.search(data)
    return int(match.group(1)) if match else None


def date_of(data: bytes) -> datetime:
    """The Date header as an aware datetime."""
    match = _DATE.search(data)
    assert match, "message has no Date header"
    return email.utils.parsedate_to_datetime(match.group(1).decode()).astimezone(UTC)


def message_id_of(data: bytes) -> str:
    """The Message-ID header."""
    match = _MESSAGE_ID.search(data)
    assert match, "message has no Message-ID header"
    return match.group(1).decode()


def by_recipient(messages: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    """Received messages grouped by recipient, in arrival order."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for recipient, data in messages:
        grouped[recipient].append(data)
    return grouped


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of the test run without any secret of ours, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DRG_") and key != "CREDENTIALS_DIRECTORY"
    }
    return env | {"PYTHONDONTWRITEBYTECODE": "1"} | extra


async def seed_due(url: str, sqlite_path: Path, count: int, due: datetime, prefix: str) -> None:
    """`count` active subscribers {prefix}{i}@example.org, all due at `due`, in one transaction.

    For tests whose processes share a database made here (the schema is made on the way).
    """
    store = await Store.open(url, sqlite_path=sqlite_path)
    rows = [
        {
            "sequence_id": "no-contact",
            "email": f"{prefix}{i}@example.org",
            "email_hash": email_hash(f"{prefix}{i}@example.org"),
            "timezone": "UTC",
            "send_time": "09:00",
            "status": "active",
            "next_due_at": due,
            "created_at": due,
            "updated_at": due,
        }
        for i in range(count)
    ]
    try:
        async with store.writing() as conn:
            await conn.execute(insert(subscribers), rows)
    finally:
        await store.close()
