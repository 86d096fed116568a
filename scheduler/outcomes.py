"""Failure policy: turn a send result into what the store records (DESIGN.md, SMTP replies)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from delivery.transports import SendResult
from guide.config import DispatchConfig
from guide.records import Outcome, Retry, Sent, Stop
from scheduler.planner import Job
from scheduler.schedule import next_send_time, parse_send_time, retry_at

log = logging.getLogger(__name__)

MISSING_SEQUENCE_RETRY = timedelta(hours=1)


class OutcomePolicy:
    """Sent → the next due time; transient → retry with backoff until the lifetime; else stop."""

    def __init__(self, settings: DispatchConfig) -> None:
        self.settings = settings
        self._due_cache: dict[tuple[str, str, int, datetime], datetime] = {}

    def outcome(self, job: Job, result: SendResult | None, now: datetime) -> Outcome:
        """What to record for `job` given the transport's `result` (None: nothing was sent)."""
        sub = job.subscriber
        if job.sequence is None:
            return Retry(
                sub.id,
                now + MISSING_SEQUENCE_RETRY,
                sub.attempts,
                sub.first_failure_at or now,
                f"sequence {sub.sequence_id!r} is not in the lesson library",
            )
        if result is None:  # nothing left to send
            return Stop(sub.id, "completed", None)
        if result.delivered:
            next_due = self._next_due(sub.timezone, sub.send_time, job.sequence.cadence_days, now)
            return Sent(
                sub.id, sub.generation, job.lesson_id, job.message_id, now, next_due, job.final
            )
        error = str(result)
        kind = result.failure_class
        if kind == "transient":
            return self._transient(job, now, error)
        if kind == "held":
            log.error(
                "subscriber %d held: the relay refused by policy (%s); "
                "check the relay, then `python run.py subscribers resume %d`",
                sub.id,
                error,
                sub.id,
            )
        return Stop(sub.id, kind, error)

    def _transient(self, job: Job, now: datetime, error: str) -> Outcome:
        sub = job.subscriber
        attempts = sub.attempts + 1
        first = sub.first_failure_at or now
        retry = retry_at(
            now=now, attempt=attempts, first_failure_at=first, lifetime=self.settings.retry_lifetime
        )
        if retry is not None:
            return Retry(sub.id, retry, attempts, first, error)
        log.error(
            "subscriber %d undeliverable: retries ran out after %d attempts: %s",
            sub.id,
            attempts,
            error,
        )
        return Stop(sub.id, "undeliverable", error)

    def _next_due(self, zone: str, at: str, cadence: int, now: datetime) -> datetime:
        # Everyone sent in one pass shares `now`, so the answer depends only on these four.
        key = (zone, at, cadence, now)
        due = self._due_cache.get(key)
        if due is None:
            if len(self._due_cache) > 10_000:
                self._due_cache.clear()
            due = next_send_time(
                tz=ZoneInfo(zone),
                send_time=parse_send_time(at),
                now=now,
                last_sent_at=now,
                cadence_days=cadence,
            )
            self._due_cache[key] = due
        return due
