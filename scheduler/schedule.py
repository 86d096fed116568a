"""Pure scheduling rules: when a subscriber's daily lesson is due and when to retry a failure."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from guide.text import parse_time_of_day

__all__ = [
    "backoff_delay",
    "local_send_instant",
    "next_send_time",
    "parse_send_time",
    "retry_at",
]

_MINUTE = timedelta(minutes=1)
_TICK = timedelta(microseconds=1)  # datetime resolution: the bisection below ends exactly
_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)


def _require_aware(name: str, value: datetime) -> None:
    # astimezone() would silently read a naive datetime as the host's local time.
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def local_send_instant(day: date, send_time: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of `send_time` on local calendar `day` in `tz`."""
    wall = datetime.combine(day, send_time.replace(second=0, microsecond=0, tzinfo=None))
    # fold=0 is the first occurrence of a wall time that a fall-back change repeats.
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        return first
    # zoneinfo does not raise for a wall time inside a DST gap: fold=0 reads it with the
    # pre-gap offset (landing after the gap) and fold=1 with the post-gap one (landing
    # before it), so the transition instant lies in (before, after]. Bisecting for it
    # works for any gap size, including whole skipped days (Pacific/Apia, 2011-12-30).
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    after = first
    while after - before > _TICK:
        middle = before + (after - before) // 2
        if _wall(middle, tz) > wall:
            after = middle
        else:
            before = middle
    # The gap ends on a whole minute for every modern zone; round up in case it doesn't.
    gap_end = _wall(after, tz)
    return after + (gap_end.replace(second=0, microsecond=0) - gap_end) % _MINUTE


def next_send_time(
    *,
    tz: ZoneInfo,
    send_time: time,
    now: datetime,
    last_sent_at: datetime | None,
    cadence_days: int = 1,
) -> datetime:
    """The next instant a lesson may be sent: strictly after `now`, at most one per local day."""
    if cadence_days < 1:
        raise ValueError(f"cadence_days must be at least 1, got {cadence_days}")
    _require_aware("now", now)
    day = now.astimezone(tz).date()
    if last_sent_at is not None:
        _require_aware("last_sent_at", last_sent_at)
        # Counting from the local date of the last send (not its due date) is what turns
        # downtime into a single catch-up lesson instead of a flood or a skipped day.
        day = max(day, last_sent_at.astimezone(tz).date() + timedelta(days=cadence_days))
    while (candidate := local_send_instant(day, send_time, tz)) <= now:
        day += timedelta(days=1)
    return candidate


def backoff_delay(attempt: int) -> timedelta:
    """Delay before retry number `attempt` (1-based) after a transient failure."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    return _BACKOFF[min(attempt, len(_BACKOFF)) - 1]


def retry_at(
    *, now: datetime, attempt: int, first_failure_at: datetime, lifetime: timedelta
) -> datetime | None:
    """When to retry a transient failure, or None once the retry `lifetime` has passed."""
    # `lifetime` is our maximal_queue_lifetime (Postfix's default is 5 days): measuring it
    # from the first failure, not the latest, stops a flapping server extending it forever.
    _require_aware("now", now)
    _require_aware("first_failure_at", first_failure_at)
    # Postfix's semantics: keep trying until the lifetime has passed, so the last attempt
    # happens at (or after) the lifetime, never a backoff step before it.
    expires = first_failure_at + lifetime
    if now >= expires:
        return None
    return min(now + backoff_delay(attempt), expires).astimezone(UTC)


def parse_send_time(text: str) -> time:
    """Parse 'HH:MM' (24-hour, zero-padded hour optional) into a time, else ValueError."""
    return parse_time_of_day(text, "send time")
