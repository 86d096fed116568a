"""One dispatch pass: claim due subscribers → render → send over pooled connections → record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from delivery.dkim import DKIMSigner
from delivery.message import MessageFactory, Personal, PreparedMessage, Recipient
from delivery.transports import Envelope, SendResult, Transport
from guide.config import Config
from guide.errors import TransportConfigError
from guide.lessons import Sequence
from guide.library import LessonLibrary
from guide.records import Outcome, Retry, Sent, Stop, Subscriber
from guide.store import Store
from guide.tokens import LinkSigner
from scheduler.ratelimit import RateLimiter
from scheduler.schedule import next_send_time, parse_send_time, retry_at

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Not a valid lesson slug, so it can never collide with a lesson id.
CLOSING_ID = "_closing"
MISSING_SEQUENCE_RETRY = timedelta(hours=1)
# How long finished sends may wait for a commit when fewer than commit_every have piled up.
FLUSH_SECONDS = 0.25


def choose_next(
    order: Seq[str], recorded: Seq[str], position: Mapping[str, int] | None = None
) -> str | None:
    """The first unrecorded lesson after the last recorded one still in `order` (DESIGN.md)."""
    if position is None:
        position = {lesson_id: i for i, lesson_id in enumerate(order)}
    start = 0
    for lesson_id in reversed(recorded):
        if lesson_id in position:
            start = position[lesson_id] + 1
            break
    if not recorded:
        return order[0] if order else None
    done = set(recorded)
    return next((lesson_id for lesson_id in order[start:] if lesson_id not in done), None)


@dataclass
class Job:
    """One subscriber's planned send (or a completion that needs no send)."""

    subscriber: Subscriber
    lesson_id: str
    message_id: str = ""
    envelope: Envelope | None = None
    sequence: Sequence | None = None
    final: bool = False  # the subscriber completes once this is delivered


@dataclass
class TickReport:
    """What one pass did."""

    claimed: int = 0
    results: Counter[str] = field(default_factory=Counter)
    halted: str = ""

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.results.items())) or "nothing due"
        return f"claimed {self.claimed}: {parts}" + (
            f" (halted: {self.halted})" if self.halted else ""
        )


class Dispatcher:
    """Runs dispatch passes; one instance per process."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        library: LessonLibrary,
        factory: MessageFactory,
        signer: LinkSigner,
        transport: Transport,
        clock: Clock,
        node: str,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.settings = config.dispatch
        self.store = store
        self.library = library
        self.factory = factory
        self.signer = signer
        self.transport = transport
        self.clock = clock
        self.node = node
        self.limiter = limiter or RateLimiter(
            self.settings.rate_per_second, self.settings.rate_per_hour
        )
        self.dkim = DKIMSigner(config.dkim) if config.dkim.enabled else None
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.halted: TransportConfigError | None = None
        self.last_tick: datetime | None = None
        self.totals: Counter[str] = Counter()
        self.tick_count = 0
        self.tick_seconds = 0.0
        self.last_tick_seconds = 0.0
        self._due_cache: dict[tuple[str, str, int, datetime], datetime] = {}

    def stop(self) -> None:
        """Stop claiming; in-flight sends finish (bounded by shutdown_grace_seconds)."""
        self.stopping.set()

    # -- planning ------------------------------------------------------------------------------

    def plan(
        self,
        subscriber: Subscriber,
        recorded: list[str],
        sequences: dict[str, Sequence],
        now: datetime,
    ) -> Job:
        """Decide what this subscriber gets now and build the message bytes."""
        sequence = sequences.get(subscriber.sequence_id)
        if sequence is None:
            return Job(subscriber, "")
        order = sequence.order
        lesson_id = choose_next(order, recorded, sequence.positions)
        if lesson_id is None:
            if not self.settings.closing_email or CLOSING_ID in recorded:
                return Job(subscriber, CLOSING_ID, sequence=sequence, final=True)
            return self._job(
                subscriber, sequence, CLOSING_ID, self.factory.prepare_closing(sequence), now, True
            )
        lesson = sequence.lessons[sequence.positions[lesson_id]]
        final = (
            not self.settings.closing_email
            and choose_next(order, [*recorded, lesson_id], sequence.positions) is None
        )
        return self._job(
            subscriber,
            sequence,
            lesson_id,
            self.factory.prepare_lesson(sequence, lesson),
            now,
            final,
        )

    def _job(
        self,
        subscriber: Subscriber,
        sequence: Sequence,
        lesson_id: str,
        prepared: PreparedMessage,
        now: datetime,
        final: bool,
    ) -> Job:
        sid = subscriber.id
        # Derived, not random: a re-send after a crash carries the same Message-ID.
        message_id = self.signer.message_id(
            self.config.sender.domain, sid, subscriber.generation, lesson_id, subscriber.repeats
        )
        personal = Personal(
            message_id=message_id,
            unsubscribe_url=self.signer.url("unsubscribe", "unsubscribe", sid, now),
            manage_url=self.signer.url("manage", "manage", sid, now),
            online_url=""
            if lesson_id == CLOSING_ID
            else self.signer.url("lesson", "lesson", [sid, lesson_id], now),
        )
        recipient = Recipient(subscriber.email or "", subscriber.name, subscriber.discreet)
        data = self.factory.build(prepared, recipient, personal, now)
        if self.dkim is not None:
            data = self.dkim.sign(data)
        envelope = Envelope(self.config.sender.address, recipient.email, data)
        return Job(subscriber, lesson_id, message_id, envelope, sequence, final)

    def outcome(self, job: Job, result: SendResult | None, now: datetime) -> Outcome:
        """Turn a send result into what the store records."""
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
            attempts = sub.attempts + 1
            first = sub.first_failure_at or now
            retry = retry_at(
                now=now,
                attempt=attempts,
                first_failure_at=first,
                lifetime=self.settings.retry_lifetime,
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
        if kind == "held":
            log.error(
                "subscriber %d held: the relay refused by policy (%s); "
                "check the relay, then `python run.py subscribers resume %d`",
                sub.id,
                error,
                sub.id,
            )
        return Stop(sub.id, kind, error)

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

    # -- the pass ------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """One pass over everyone due at `now`; returns when all claimed work is recorded."""
        report = TickReport()
        if self.stopping.is_set():
            return report
        now = now or self.clock()
        self.idle.clear()
        started = time.perf_counter()
        try:
            await self._tick(now, report)
        finally:
            self.idle.set()
            self.last_tick = now
            self.last_tick_seconds = time.perf_counter() - started
            self.tick_count += 1
            self.tick_seconds += self.last_tick_seconds
        self.totals.update(report.results)
        if report.claimed:
            log.info("tick at %s: %s", now.isoformat(timespec="seconds"), report)
        return report

    async def _tick(self, now: datetime, report: TickReport) -> None:
        sequences = self.library.current()
        connections = self.settings.connections
        jobs: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(connections * 8, 256))
        outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        unsent: list[int] = []
        # At most this many outcomes may be sent but not yet committed: the most a crash can
        # make us send twice (DESIGN.md: the duplicate window as small as physics allows).
        window = asyncio.Semaphore(self.settings.commit_every + connections)

        claimed: asyncio.Queue[tuple[list[Subscriber], dict[int, list[str]]] | None] = (
            asyncio.Queue(maxsize=1)
        )

        async def claim() -> None:
            # Runs ahead of planning by one batch, so the database round trips overlap the
            # sending instead of stalling the workers between batches.
            lease = timedelta(seconds=self.settings.lease_seconds)
            try:
                while not self.stopping.is_set() and self.halted is None:
                    batch = await self.store.claim_due(
                        now, self.settings.batch_size, self.node, now + lease
                    )
                    report.claimed += len(batch)
                    if not batch:
                        return
                    await claimed.put((batch, await self.store.progress([s.id for s in batch])))
                    if len(batch) < self.settings.batch_size:
                        return
            finally:
                await claimed.put(None)

        async def produce() -> None:
            while (item := await claimed.get()) is not None:
                batch, recorded = item
                for sub in batch:
                    if self.stopping.is_set() or self.halted is not None:
                        unsent.append(sub.id)
                        continue
                    try:
                        job = self.plan(sub, recorded[sub.id], sequences, now)
                    except Exception:
                        log.exception("cannot prepare a message for subscriber %d", sub.id)
                        continue
                    if job.envelope is None:
                        await window.acquire()
                        outcomes.put_nowait(self.outcome(job, None, now))
                    else:
                        await jobs.put(job)

        async def work() -> None:
            connection = await self.transport.connect()
            try:
                while (job := await jobs.get()) is not None:
                    assert job.envelope is not None
                    if self.stopping.is_set() or self.halted is not None:
                        unsent.append(job.subscriber.id)
                        continue
                    await self.limiter.acquire()
                    await window.acquire()
                    try:
                        result = await connection.send(job.envelope)
                        outcomes.put_nowait(self.outcome(job, result, now))
                    except TransportConfigError as err:
                        window.release()
                        self._halt(err)
                        unsent.append(job.subscriber.id)
                    except Exception:
                        window.release()
                        # One bad subscriber (say, a timezone removed from tzdata) must not
                        # stall the whole pass; the lease runs out and it is tried again.
                        log.exception("sending to subscriber %d failed", job.subscriber.id)
            finally:
                await connection.close()

        async def record() -> None:
            pending: list[Outcome] = []
            loop = asyncio.get_running_loop()
            deadline = 0.0

            async def flush() -> None:
                nonlocal pending
                if pending:
                    await self.store.record(pending, now)
                    for _ in pending:
                        window.release()
                    pending = []

            while True:
                try:
                    if pending:
                        item = await asyncio.wait_for(
                            outcomes.get(), max(deadline - loop.time(), 0)
                        )
                    else:
                        item = await outcomes.get()
                        deadline = loop.time() + FLUSH_SECONDS
                except TimeoutError:
                    await flush()
                    continue
                finished = False
                while item is not None:
                    pending.append(item)
                    report.results[_label(item)] += 1
                    if len(pending) >= self.settings.commit_every:
                        await flush()
                    if outcomes.empty():
                        break
                    item = outcomes.get_nowait()
                else:
                    finished = True
                if finished:
                    break
            await flush()

        recorder = asyncio.create_task(record())
        workers = [asyncio.create_task(work()) for _ in range(connections)]
        claimer = asyncio.create_task(claim())
        try:
            await produce()
            await claimer
        finally:
            if not claimer.done():
                claimer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await claimer
            for _ in workers:
                await jobs.put(None)
            await self._join_workers(workers, jobs, unsent)
            outcomes.put_nowait(None)
            await recorder
            if unsent:
                await self.store.release(self.node, unsent)
        if self.halted is not None:
            report.halted = str(self.halted)

    async def _join_workers(
        self, workers: list[asyncio.Task[None]], jobs: asyncio.Queue[Job | None], unsent: list[int]
    ) -> None:
        pending = set(workers)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            if pending and self.stopping.is_set():
                # Shutting down: give in-flight sends their grace period, then cut them off.
                _, pending = await asyncio.wait(
                    pending, timeout=self.settings.shutdown_grace_seconds
                )
                for task in pending:
                    task.cancel()
                for task in pending:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                while not jobs.empty():
                    job = jobs.get_nowait()
                    if job is not None:
                        unsent.append(job.subscriber.id)
                return
        for task in workers:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _halt(self, err: TransportConfigError) -> None:
        if self.halted is None:
            log.error("sending stopped: %s (fix the configuration and restart)", err)
        self.halted = err


def _label(outcome: Outcome) -> str:
    if isinstance(outcome, Sent):
        return "sent"
    if isinstance(outcome, Retry):
        return "retry"
    return outcome.status
