"""1,000 subscribers, 20 timezones, 40 simulated days across DST changes, real SMTP and SQLite."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from delivery.transports import SMTPTransport
from scheduler.schedule import local_send_instant
from tests.harness import (
    Clock,
    add_many,
    by_recipient,
    config_for,
    date_of,
    day_of,
    make_parts,
    next_due,
)
from tests.smtpd import SMTPServers, smtp_servers

__all__ = ["smtp_servers"]

# The window holds Sydney's and Lord Howe's spring-forward (4 Oct 2026), London's fall-back
# (25 Oct) and New York's (1 Nov); Kathmandu (+05:45) and India (+05:30) add odd offsets.
START = datetime(2026, 9, 28, 0, 0, tzinfo=UTC)
DAYS = 40
ZONES = {
    "America/New_York": ("01:30", "07:00", "21:45"),  # 01:30 is ambiguous on 1 Nov
    "Europe/London": ("01:30", "08:15", "12:00"),  # 01:30 is ambiguous on 25 Oct
    "Australia/Sydney": ("02:30", "06:45", "19:00"),  # 02:30 does not exist on 4 Oct
    "Australia/Lord_Howe": ("02:15", "07:30", "22:00"),  # 02:15 is in a 30-minute gap
    "Asia/Kathmandu": ("06:00", "09:10", "23:59"),
    "Asia/Kolkata": ("00:00", "07:00", "18:30"),
    "Europe/Berlin": ("02:30", "08:00", "20:00"),  # Berlin's change is 25 Oct, 03:00 → 02:00
    "America/Los_Angeles": ("01:30", "06:00", "17:00"),
    "America/Sao_Paulo": ("07:00", "12:00", "21:00"),
    "America/St_Johns": ("00:30", "07:30", "18:00"),
    "Pacific/Auckland": ("07:00", "12:00", "23:00"),
    "Pacific/Chatham": ("08:00", "13:45", "20:00"),
    "Asia/Tokyo": ("07:00", "12:30", "21:00"),
    "Africa/Casablanca": ("06:30", "08:00", "19:00"),
    "Africa/Lagos": ("06:00", "09:00", "18:00"),
    "Asia/Dubai": ("05:00", "07:45", "22:00"),
    "America/Mexico_City": ("07:00", "08:00", "20:00"),
    "Europe/Dublin": ("01:30", "07:00", "21:00"),
    "Pacific/Honolulu": ("05:00", "06:00", "22:30"),
    "UTC": ("00:00", "09:00", "23:30"),
}
PER_ZONE = 50


def expected_instant(local_day: date, at: str, zone: ZoneInfo) -> datetime:
    """Where the send for `local_day` must land (gap times move to the first valid minute)."""
    hour, minute = map(int, at.split(":"))
    return local_send_instant(local_day, time(hour, minute), zone)


async def test_every_subscriber_gets_one_lesson_per_local_day_in_order(
    tmp_path: Path, smtp_servers: SMTPServers
) -> None:
    server = await smtp_servers.start()
    clock = Clock(START)
    config = config_for(tmp_path, connections=4, commit_every=100)
    parts = await make_parts(config, clock, SMTPTransport(server.smtp_config()))
    rng = random.Random(7)
    people = []
    for index, (zone_id, times) in enumerate(ZONES.items()):
        for n in range(PER_ZONE):
            people.append((f"p{index:02d}-{n:02d}@example.org", zone_id, rng.choice(times)))
    await add_many(parts, people, START)
    setting = {address: (zone, at) for address, zone, at in people}

    end = START + timedelta(days=DAYS)
    ticks = 0
    try:
        while (due := await next_due(parts)) is not None and due < end:
            clock.now = due
            await parts.dispatcher.tick()
            ticks += 1
    finally:
        await parts.close()

    received = by_recipient([(m.rcpt_tos[0], m.data) for m in server.messages])
    assert set(received) == set(setting)
    completed = 0
    for address, messages in received.items():
        zone_name, at = setting[address]
        zone = ZoneInfo(zone_name)
        days = [day_of(data) for data in messages]
        lessons = [d for d in days if d is not None]
        # Lessons 1..N in order, none skipped, none twice; the closing email only at the end.
        assert lessons == list(range(1, len(lessons) + 1)), (address, days)
        if None in days:
            assert days.index(None) == len(days) - 1 == 30, (address, days)
            completed += 1
        sent = [date_of(data) for data in messages]
        local_days = [instant.astimezone(zone).date() for instant in sent]
        first = local_days[0]
        # One per local day, on consecutive days, each at the subscriber's local time.
        assert local_days == [first + timedelta(days=i) for i in range(len(sent))], address
        for instant, local_day in zip(sent, local_days, strict=True):
            assert instant == expected_instant(local_day, at, zone), (address, instant)
        # The first lesson went at the first send time after sign-up, the last near the end.
        assert sent[0] == expected_instant(START.astimezone(zone).date(), at, zone) or sent[
            0
        ] == expected_instant(START.astimezone(zone).date() + timedelta(days=1), at, zone)
        assert len(messages) >= 31 or sent[-1] > end - timedelta(days=1, hours=1)
    assert completed == len(setting)  # 40 days hold all 30 lessons and the closing email
    assert ticks < 20 * 3 * (DAYS + 2)
