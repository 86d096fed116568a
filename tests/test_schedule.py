"""Tests for scheduler.schedule: DST edge cases, downtime catch-up, retries, send-time parsing."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.schedule import (
    backoff_delay,
    local_send_instant,
    next_send_time,
    parse_send_time,
    retry_at,
)

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
APIA = ZoneInfo("Pacific/Apia")
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)

# DST at odd hours (midnight, 24:00), 30-minute and 2-hour DST, negative DST (Dublin),
# Ramadan suspensions (Casablanca), one-off half-hour shifts (Caracas, Pyongyang) and
# whole-day date-line jumps (Apia, Fakaofo).
ZONES_WITH_TRANSITIONS = (
    "Africa/Cairo",
    "Africa/Casablanca",
    "America/Asuncion",
    "America/Caracas",
    "America/Chicago",
    "America/Grand_Turk",
    "America/Halifax",
    "America/Havana",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/New_York",
    "America/Nuuk",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Antarctica/Troll",
    "Asia/Amman",
    "Asia/Beirut",
    "Asia/Damascus",
    "Asia/Gaza",
    "Asia/Jerusalem",
    "Asia/Pyongyang",
    "Asia/Tehran",
    "Atlantic/Azores",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Europe/Berlin",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/London",
    "Europe/Moscow",
    "Europe/Volgograd",
    "Pacific/Apia",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Fakaofo",
    "Pacific/Fiji",
    "Pacific/Norfolk",
    "Pacific/Tongatapu",
)

# Hypothesis' example database would write .hypothesis/ into the repository; runs must be
# reproducible from the seed alone anyway.
FAST = settings(max_examples=200, deadline=None, database=None)


def _loadable(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


ALL_ZONES = tuple(name for name in sorted(available_timezones()) if _loadable(name))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant given in UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, *, fold: int = 0
) -> datetime:
    """An instant given as wall-clock time in `tz` (fold=1 for the second pass of a repeat)."""
    return datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold)


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock reading of `instant` in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


def exists(naive: datetime, tz: ZoneInfo) -> bool:
    """Whether the wall-clock time `naive` ever shows in `tz` (False inside a DST gap)."""
    # Via UTC: astimezone() to the datetime's own tzinfo returns it unchanged.
    return wall(naive.replace(tzinfo=tz, fold=0).astimezone(UTC), tz) == naive


def oracle_instant(day: date, send_time: time, tz: ZoneInfo) -> datetime:
    """Brute-force reference for local_send_instant: step the wall clock a minute at a time."""
    naive = datetime.combine(day, send_time.replace(second=0, microsecond=0))
    while not exists(naive, tz):
        naive += MINUTE
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


# --- local_send_instant: examples -------------------------------------------------------


# (case id, zone, local day, send time, expected UTC instant)
LOCAL_SEND_CASES = [
    ("ny-summer", "America/New_York", "2026-06-01", "09:00", "2026-06-01 13:00"),
    ("ny-winter", "America/New_York", "2026-01-05", "09:00", "2026-01-05 14:00"),
    # 02:00-02:59 does not exist on spring-forward day: first valid minute is 03:00 EDT.
    ("ny-gap", "America/New_York", "2026-03-08", "02:30", "2026-03-08 07:00"),
    ("ny-gap-start", "America/New_York", "2026-03-08", "02:00", "2026-03-08 07:00"),
    ("ny-before-gap", "America/New_York", "2026-03-08", "01:59", "2026-03-08 06:59"),
    ("ny-after-gap", "America/New_York", "2026-03-08", "03:00", "2026-03-08 07:00"),
    # 01:00-01:59 happens twice on fall-back day: the first (EDT) occurrence wins.
    ("ny-ambiguous", "America/New_York", "2026-11-01", "01:30", "2026-11-01 05:30"),
    ("ny-after-overlap", "America/New_York", "2026-11-01", "02:00", "2026-11-01 07:00"),
    ("london-gap", "Europe/London", "2026-03-29", "01:45", "2026-03-29 01:00"),
    ("london-gap-start", "Europe/London", "2026-03-29", "01:00", "2026-03-29 01:00"),
    ("london-ambiguous", "Europe/London", "2026-10-25", "01:30", "2026-10-25 00:30"),
    ("london-after-overlap", "Europe/London", "2026-10-25", "02:00", "2026-10-25 02:00"),
    ("kathmandu", "Asia/Kathmandu", "2026-06-01", "09:00", "2026-06-01 03:15"),
    ("kathmandu-utc-yesterday", "Asia/Kathmandu", "2026-06-01", "05:44", "2026-05-31 23:59"),
    # Lord Howe springs forward only 30 minutes: 02:00-02:29 is missing...
    ("lord-howe-gap", "Australia/Lord_Howe", "2026-10-04", "02:10", "2026-10-03 15:30"),
    ("lord-howe-after-gap", "Australia/Lord_Howe", "2026-10-04", "02:30", "2026-10-03 15:30"),
    # ...and falls back 30 minutes: 01:30-01:59 repeats; the first pass is at +11:00.
    ("lord-howe-ambiguous", "Australia/Lord_Howe", "2026-04-05", "01:45", "2026-04-04 14:45"),
    # Samoa skipped 2011-12-30 entirely: the first valid minute is 31 December 00:00.
    ("apia-lost-day", "Pacific/Apia", "2011-12-30", "09:00", "2011-12-30 10:00"),
]


@pytest.mark.parametrize(
    ("zone", "day", "send_time", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in LOCAL_SEND_CASES],
)
def test_local_send_instant_examples(zone: str, day: str, send_time: str, expected: str) -> None:
    result = local_send_instant(
        date.fromisoformat(day), time.fromisoformat(send_time), ZoneInfo(zone)
    )
    assert result == datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert result.tzinfo is UTC


def test_local_send_instant_ignores_seconds() -> None:
    result = local_send_instant(date(2026, 6, 1), time(9, 0, 59, 999_999), NEW_YORK)
    assert result == utc(2026, 6, 1, 13, 0)


# --- next_send_time: examples -----------------------------------------------------------


def test_send_time_one_minute_ahead_is_today() -> None:
    now = local(NEW_YORK, 2026, 6, 10, 8, 59)
    result = next_send_time(tz=NEW_YORK, send_time=time(9, 0), now=now, last_sent_at=None)
    assert result == utc(2026, 6, 10, 13, 0)


def test_send_time_exactly_now_is_tomorrow() -> None:
    now = local(NEW_YORK, 2026, 6, 10, 9, 0)
    result = next_send_time(tz=NEW_YORK, send_time=time(9, 0), now=now, last_sent_at=None)
    assert result == utc(2026, 6, 11, 13, 0)


def test_send_time_already_passed_today_is_tomorrow() -> None:
    now = local(NEW_YORK, 2026, 6, 10, 9, 1)
    result = next_send_time(tz=NEW_YORK, send_time=time(9, 0), now=now, last_sent_at=None)
    assert result == utc(2026, 6, 11, 13, 0)


def test_sent_earlier_today_waits_for_tomorrow_even_if_send_time_is_later() -> None:
    # The subscriber moved their send time from 07:00 to 20:00 after today's lesson went out.
    last = local(NEW_YORK, 2026, 6, 10, 7, 0)
    now = local(NEW_YORK, 2026, 6, 10, 12, 0)
    result = next_send_time(tz=NEW_YORK, send_time=time(20, 0), now=now, last_sent_at=last)
    assert result == utc(2026, 6, 12, 0, 0)  # 2026-06-11 20:00 EDT


def test_cadence_two_days() -> None:
    last = local(NEW_YORK, 2026, 6, 10, 9, 0)
    now = last + timedelta(seconds=1)
    result = next_send_time(
        tz=NEW_YORK, send_time=time(9, 0), now=now, last_sent_at=last, cadence_days=2
    )
    assert result == utc(2026, 6, 12, 13, 0)


def test_cadence_counts_local_days_not_24_hour_periods() -> None:
    # 23:30 on the 10th and 00:30 on the 12th are 25 hours apart but two local days apart.
    last = local(NEW_YORK, 2026, 6, 10, 23, 30)
    result = next_send_time(
        tz=NEW_YORK, send_time=time(0, 30), now=last, last_sent_at=last, cadence_days=2
    )
    assert result == local(NEW_YORK, 2026, 6, 12, 0, 30)


def run_ticks(
    tz: ZoneInfo, send_time: time, last_sent_at: datetime, start: datetime, until: datetime
) -> list[datetime]:
    """Model the caller: from `start`, tick every 5 minutes and send when the lesson is due."""
    due = next_send_time(tz=tz, send_time=send_time, now=last_sent_at, last_sent_at=last_sent_at)
    sent: list[datetime] = []
    now = start
    while now <= until:
        if due <= now:
            sent.append(now)
            due = next_send_time(tz=tz, send_time=send_time, now=now, last_sent_at=now)
        now += 5 * MINUTE
    return sent


def test_downtime_sends_one_catch_up_lesson_then_resumes_next_day() -> None:
    # Last lesson Sunday 09:00, so Monday 09:00 is due; the service is down from Monday
    # 08:00 until Thursday 10:00.
    sent = run_ticks(
        NEW_YORK,
        time(9, 0),
        last_sent_at=local(NEW_YORK, 2026, 6, 14, 9, 0),
        start=local(NEW_YORK, 2026, 6, 18, 10, 0),
        until=local(NEW_YORK, 2026, 6, 19, 23, 55),
    )
    assert sent == [local(NEW_YORK, 2026, 6, 18, 10, 0), local(NEW_YORK, 2026, 6, 19, 9, 0)]


def test_downtime_ending_before_send_time_still_sends_only_once_that_day() -> None:
    # Back up Thursday 08:00: the catch-up goes out then, and not again at 09:00.
    sent = run_ticks(
        NEW_YORK,
        time(9, 0),
        last_sent_at=local(NEW_YORK, 2026, 6, 14, 9, 0),
        start=local(NEW_YORK, 2026, 6, 18, 8, 0),
        until=local(NEW_YORK, 2026, 6, 19, 23, 55),
    )
    assert sent == [local(NEW_YORK, 2026, 6, 18, 8, 0), local(NEW_YORK, 2026, 6, 19, 9, 0)]


def test_no_downtime_sends_every_day_at_send_time() -> None:
    sent = run_ticks(
        NEW_YORK,
        time(9, 0),
        last_sent_at=local(NEW_YORK, 2026, 6, 14, 9, 0),
        start=local(NEW_YORK, 2026, 6, 14, 9, 0),
        until=local(NEW_YORK, 2026, 6, 17, 23, 55),
    )
    assert sent == [local(NEW_YORK, 2026, 6, d, 9, 0) for d in (15, 16, 17)]


def test_next_send_time_on_spring_forward_day() -> None:
    last = local(NEW_YORK, 2026, 3, 7, 2, 30)
    result = next_send_time(tz=NEW_YORK, send_time=time(2, 30), now=last, last_sent_at=last)
    assert result == local(NEW_YORK, 2026, 3, 8, 3, 0)
    again = next_send_time(tz=NEW_YORK, send_time=time(2, 30), now=result, last_sent_at=result)
    assert again == local(NEW_YORK, 2026, 3, 9, 2, 30)


def test_next_send_time_now_in_second_occurrence_of_ambiguous_hour() -> None:
    # At 01:45 EST (second pass) today's 01:30 (first pass, EDT) is 75 minutes ago.
    now = local(NEW_YORK, 2026, 11, 1, 1, 45, fold=1)
    result = next_send_time(tz=NEW_YORK, send_time=time(1, 30), now=now, last_sent_at=None)
    assert result == local(NEW_YORK, 2026, 11, 2, 1, 30)


def test_samoa_lost_day_sends_once_on_31_december() -> None:
    last = local(APIA, 2011, 12, 29, 9, 0)
    first = next_send_time(tz=APIA, send_time=time(9, 0), now=last, last_sent_at=last)
    assert wall(first, APIA) == datetime(2011, 12, 31, 0, 0)
    second = next_send_time(tz=APIA, send_time=time(9, 0), now=first, last_sent_at=first)
    assert wall(second, APIA) == datetime(2012, 1, 1, 9, 0)


def test_late_send_into_a_relived_evening() -> None:
    # Until 2011 St. John's fell back at 00:01 to 23:01 the previous evening, so 00:00 on
    # 29 Oct 2000 happened twice. The lesson due at its first pass, sent 10 minutes late,
    # goes out at 23:10 on the 28th: the same local date as the 28th's lesson (the caller's
    # lateness; no schedule can undo it). The 29th then gets no lesson of its own, as its
    # slot (first pass, per the fold=0 rule) passed before the late send.
    tz = ZoneInfo("America/St_Johns")
    sent_28th = local(tz, 2000, 10, 28, 0, 0)
    due = next_send_time(tz=tz, send_time=time(0, 0), now=sent_28th, last_sent_at=sent_28th)
    assert due == utc(2000, 10, 29, 2, 30)
    late = due + 10 * MINUTE
    assert wall(late, tz) == datetime(2000, 10, 28, 23, 10)
    following = next_send_time(tz=tz, send_time=time(0, 0), now=late, last_sent_at=late)
    assert wall(following, tz) == datetime(2000, 10, 30, 0, 0)


def test_next_send_time_returns_utc() -> None:
    now = datetime(2026, 6, 10, 8, 0, tzinfo=KATHMANDU)
    result = next_send_time(tz=KATHMANDU, send_time=time(9, 0), now=now, last_sent_at=None)
    assert result.tzinfo is UTC
    assert result == utc(2026, 6, 10, 3, 15)


@pytest.mark.parametrize("cadence_days", [0, -1])
def test_cadence_below_one_is_rejected(cadence_days: int) -> None:
    with pytest.raises(ValueError, match="cadence_days"):
        next_send_time(
            tz=LONDON,
            send_time=time(9, 0),
            now=utc(2026, 6, 1),
            last_sent_at=None,
            cadence_days=cadence_days,
        )


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_time(tz=LONDON, send_time=time(9, 0), now=datetime(2026, 6, 1), last_sent_at=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_time(
            tz=LONDON, send_time=time(9, 0), now=utc(2026, 6, 1), last_sent_at=datetime(2026, 6, 1)
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        retry_at(
            now=datetime(2026, 6, 1),
            attempt=1,
            first_failure_at=utc(2026, 6, 1),
            lifetime=timedelta(days=5),
        )


# --- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=5)),
        (3, timedelta(minutes=30)),
        (4, timedelta(hours=2)),
        (5, timedelta(hours=6)),
        (6, timedelta(hours=6)),
        (1000, timedelta(hours=6)),
    ],
)
def test_backoff_delay(attempt: int, expected: timedelta) -> None:
    assert backoff_delay(attempt) == expected


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_delay_rejects_attempt_below_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(attempt)


def test_retry_at_within_lifetime() -> None:
    first = utc(2026, 6, 1, 12, 0)
    result = retry_at(now=first, attempt=1, first_failure_at=first, lifetime=timedelta(days=5))
    assert result == utc(2026, 6, 1, 12, 1)


def test_retry_at_lifetime_cutoff() -> None:
    first = utc(2026, 6, 1, 12, 0)
    lifetime = timedelta(days=5)
    # A retry landing exactly at the end of the lifetime is allowed...
    at_limit = first + lifetime - timedelta(hours=6)
    assert retry_at(now=at_limit, attempt=7, first_failure_at=first, lifetime=lifetime) == (
        first + lifetime
    )
    # ...and one that would land later is moved to the end of the lifetime, not dropped: the
    # last attempt happens at the lifetime (Postfix's maximal_queue_lifetime).
    past_limit = at_limit + timedelta(seconds=1)
    assert retry_at(now=past_limit, attempt=7, first_failure_at=first, lifetime=lifetime) == (
        first + lifetime
    )
    # Once the lifetime has passed, a failure is final.
    for late in (first + lifetime, first + lifetime + timedelta(seconds=1)):
        assert retry_at(now=late, attempt=8, first_failure_at=first, lifetime=lifetime) is None


def test_retry_at_returns_utc() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=NEW_YORK)
    result = retry_at(now=now, attempt=2, first_failure_at=now, lifetime=timedelta(days=5))
    assert result is not None
    assert result.tzinfo is UTC
    assert result == utc(2026, 6, 1, 16, 5)


def test_retry_schedule_gives_up_after_five_days() -> None:
    first = utc(2026, 6, 1, 12, 0)
    lifetime = timedelta(days=5)
    now, attempt = first, 1
    retries: list[datetime] = []
    while (
        when := retry_at(now=now, attempt=attempt, first_failure_at=first, lifetime=lifetime)
    ) is not None:
        retries.append(when)
        now, attempt = when, attempt + 1
    # 1m + 5m + 30m + 2h = 2h36m, then 6-hourly: 19 more fit in the remaining 4d 21h24m, and
    # one last attempt lands exactly at the lifetime.
    assert len(retries) == 4 + 19 + 1
    assert retries[-1] - first == lifetime
    assert retries[-2] + timedelta(hours=6) - first > lifetime


# --- parse_send_time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9:05", time(9, 5)),
        ("09:05", time(9, 5)),
        ("23:59", time(23, 59)),
        ("00:00", time(0, 0)),
        ("0:00", time(0, 0)),
        ("19:30", time(19, 30)),
        ("20:00", time(20, 0)),
    ],
)
def test_parse_send_time_accepts(text: str, expected: time) -> None:
    assert parse_send_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "24:00",
        "9:5",
        "09:60",
        "9am",
        "",
        " 09:05",
        "09:05 ",
        "09:05\n",
        "09:05:00",
        "009:05",
        "09:005",
        "0905",
        "09.05",
        "-1:00",
        "+9:05",
        ":05",
        "9:",
        # Non-ASCII digits, which int() would happily convert.
        "\u0669:05",  # Arabic-Indic nine
        "1\u0669:05",
        "09:0\u0665",
        "\uff19:05",  # full-width nine
    ],
)
def test_parse_send_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must be a 24-hour time HH:MM, got ") as excinfo:
        parse_send_time(text)
    assert repr(text) in str(excinfo.value)


@given(st.integers(0, 23), st.integers(0, 59))
@FAST
def test_parse_send_time_round_trips(hour: int, minute: int) -> None:
    assert parse_send_time(f"{hour:02d}:{minute:02d}") == time(hour, minute)
    assert parse_send_time(f"{hour}:{minute:02d}") == time(hour, minute)


# --- property tests ---------------------------------------------------------------------

zone_names = st.sampled_from(ALL_ZONES)
send_minutes = st.builds(time, st.integers(0, 23), st.integers(0, 59))
start_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)
# None means "sent on time"; a timedelta models downtime that delayed the send.
delays = st.one_of(
    st.none(), st.none(), st.none(), st.timedeltas(timedelta(seconds=1), timedelta(days=4))
)


@given(tz_name=zone_names, day=st.dates(date(2000, 1, 1), date(2037, 12, 31)), at=send_minutes)
@FAST
def test_local_send_instant_matches_brute_force(tz_name: str, day: date, at: time) -> None:
    tz = ZoneInfo(tz_name)
    result = local_send_instant(day, at, tz)
    assert result == oracle_instant(day, at, tz)
    assert result.tzinfo is UTC
    target = datetime.combine(day, at)
    if exists(target, tz):
        assert wall(result, tz) == target
    else:
        assert wall(result, tz) > target


@dataclass(frozen=True)
class Transition:
    """One UTC offset change: `at` is the first instant on the new offset."""

    zone: str
    at: datetime
    before: timedelta
    after: timedelta


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta:
    """The UTC offset of `tz` at `instant`."""
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


@functools.cache
def transitions() -> tuple[Transition, ...]:
    """Every offset change 2000-2037 in ZONES_WITH_TRANSITIONS, found by scanning UTC."""
    found: list[Transition] = []
    # Misses only a change undone within a week, which merely costs coverage.
    step = timedelta(days=7)
    for name in ZONES_WITH_TRANSITIONS:
        tz = ZoneInfo(name)
        lo, end = utc(2000, 1, 1), utc(2038, 1, 1)
        while lo < end:
            hi = lo + step
            start_offset = _offset(tz, lo)
            if _offset(tz, hi) != start_offset:
                a, b = lo, hi
                while b - a > timedelta(seconds=1):
                    mid = a + timedelta(seconds=(b - a).total_seconds() // 2)
                    a, b = (a, mid) if _offset(tz, mid) != start_offset else (mid, b)
                found.append(Transition(name, b, start_offset, _offset(tz, b)))
                hi = b
            lo = hi
    return tuple(found)


def gaps() -> tuple[Transition, ...]:
    """Transitions that skip wall-clock time (spring forward)."""
    return tuple(t for t in transitions() if t.after > t.before)


def overlaps() -> tuple[Transition, ...]:
    """Transitions that repeat wall-clock time (fall back)."""
    return tuple(t for t in transitions() if t.after < t.before)


def test_transition_scan_finds_known_changes() -> None:
    # Guards the property tests below against silently sampling from an empty list.
    hour = timedelta(hours=1)
    assert Transition("America/New_York", utc(2026, 3, 8, 7), -5 * hour, -4 * hour) in gaps()
    assert Transition("Pacific/Apia", utc(2011, 12, 30, 10), -10 * hour, 14 * hour) in gaps()
    lord_howe_2026 = Transition("Australia/Lord_Howe", utc(2026, 4, 4, 15), 11 * hour, 630 * MINUTE)
    assert lord_howe_2026 in overlaps()
    assert len(gaps()) > 500
    assert len(overlaps()) > 500


@given(data=st.data())
@FAST
def test_any_minute_in_a_gap_maps_to_the_gap_end(data: st.DataObject) -> None:
    gap = data.draw(st.sampled_from(gaps()))
    tz = ZoneInfo(gap.zone)
    gap_start = (gap.at + gap.before).replace(tzinfo=None)
    gap_minutes = (gap.after - gap.before) // MINUTE
    target = gap_start + data.draw(st.integers(0, gap_minutes - 1)) * MINUTE
    assert local_send_instant(target.date(), target.time(), tz) == gap.at


@given(data=st.data())
@FAST
def test_any_repeated_minute_maps_to_its_first_occurrence(data: st.DataObject) -> None:
    overlap = data.draw(st.sampled_from(overlaps()))
    tz = ZoneInfo(overlap.zone)
    repeat_start = (overlap.at + overlap.after).replace(tzinfo=None)
    repeat_minutes = (overlap.before - overlap.after) // MINUTE
    target = repeat_start + data.draw(st.integers(0, repeat_minutes - 1)) * MINUTE
    result = local_send_instant(target.date(), target.time(), tz)
    assert result < overlap.at
    assert result == (target - overlap.before).replace(tzinfo=UTC)


def simulate(
    tz: ZoneInfo,
    send_time: time,
    start: datetime,
    cadence: int,
    step_delays: list[timedelta | None],
) -> list[datetime]:
    """Run a subscriber through `step_delays`, checking every scheduling invariant."""
    now: datetime = start
    last: datetime | None = None
    sends: list[datetime] = []
    for delay in step_delays:
        due = next_send_time(
            tz=tz, send_time=send_time, now=now, last_sent_at=last, cadence_days=cadence
        )
        assert due > now
        assert due.tzinfo is UTC

        # Reference: the spec's formula, with the brute-force instant.
        earliest = now.astimezone(tz).date()
        if last is not None:
            earliest = max(earliest, last.astimezone(tz).date() + cadence * DAY)
        day = earliest
        while oracle_instant(day, send_time, tz) <= now:
            day += DAY
        assert due == oracle_instant(day, send_time, tz)

        slot = oracle_instant(earliest, send_time, tz)
        if last is None:
            assert day - earliest <= DAY
        else:
            # Nothing skipped, on time or after downtime: due exactly `cadence` local days
            # on, unless that slot passed and the wall clock then ran back before it (see
            # the St. John's test).
            assert day == earliest or (slot <= now and wall(now, tz) < wall(slot, tz))
        intended = datetime.combine(day, send_time)
        if exists(intended, tz):
            assert wall(due, tz) == intended
        else:
            # Moved forward to the first valid minute after the gap.
            assert wall(due, tz) > intended
            assert wall(due, tz).second == 0
            previous_minute = wall(due, tz) - MINUTE
            assert previous_minute <= intended or not exists(previous_minute, tz)

        if last is not None:
            # At most one lesson per local day, never closer than the cadence. Checked on
            # the scheduled instant, not the late send: see the St. John's test above.
            assert (wall(due, tz).date() - wall(last, tz).date()).days >= cadence

        sent_at = due if delay is None else due + delay
        sends.append(sent_at)
        now = last = sent_at
    return sends


@given(
    tz_name=zone_names,
    send_time=send_minutes,
    start=start_instants,
    cadence=st.sampled_from([1, 1, 1, 2, 3]),
    step_delays=st.lists(delays, min_size=40, max_size=40),
)
@FAST
def test_simulated_subscriber(
    tz_name: str,
    send_time: time,
    start: datetime,
    cadence: int,
    step_delays: list[timedelta | None],
) -> None:
    simulate(ZoneInfo(tz_name), send_time, start, cadence, step_delays)


@given(data=st.data())
@FAST
def test_simulated_subscriber_across_a_gap(data: st.DataObject) -> None:
    # Random instants rarely land in a DST gap, so aim the send time at one on purpose.
    gap = data.draw(st.sampled_from(gaps()))
    tz = ZoneInfo(gap.zone)
    gap_start = (gap.at + gap.before).replace(tzinfo=None)
    gap_minutes = (gap.after - gap.before) // MINUTE
    target = gap_start + data.draw(st.integers(0, gap_minutes - 1)) * MINUTE
    lead = data.draw(st.timedeltas(timedelta(hours=1), timedelta(days=5)))
    sends = simulate(tz, target.time(), gap.at - lead, 1, [None] * 10)
    assert gap.at in sends
