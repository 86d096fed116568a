"""The stages of one pass: claim → plan → N workers sending → recorder, joined by queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from delivery.transports.base import Connection
from guide.errors import TransportConfigError
from guide.lessons import Sequence
from guide.node_queries import Beat
from guide.records import Outcome, Retry, Sent, Subscriber
from scheduler.planner import Job

if TYPE_CHECKING:
    from scheduler.dispatch import Dispatcher, TickReport

log = logging.getLogger(__name__)

# How long finished sends may wait for a commit when fewer than commit_every have piled up.
FLUSH_SECONDS = 0.25
# Subscribers planned between two chances for the rest of the event loop to run.
_PLAN_SLICE = 32
Claimed = tuple[list[Subscriber], dict[int, list[str]]]


class Pass:
    """One pass over everyone due at `now`; `run()` returns when all claimed work is recorded."""

    def __init__(self, dispatcher: Dispatcher, now: datetime, report: TickReport) -> None:
        self.d = dispatcher
        self.settings = dispatcher.settings
        self.now = now
        self.report = report
        self.sequences: dict[str, Sequence] = dispatcher.library.current()
        connections = self.settings.connections
        self.jobs: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(connections * 8, 256))
        self.outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self.claimed: asyncio.Queue[Claimed | None] = asyncio.Queue(maxsize=1)
        self.unsent: list[int] = []
        # At most this many outcomes may be sent but not yet committed: the most a crash can
        # make us send twice (DESIGN.md: the duplicate window as small as physics allows).
        self.window = asyncio.Semaphore(self.settings.commit_every + connections)
        self.lease = timedelta(seconds=self.settings.lease_seconds)
        # Every lease this pass gives is at least this late; renewal extends only those.
        self.first_lease = now + self.lease
        self.started = 0.0  # the event loop's time when run() began
        self.lease_lost = False
        self.finished = asyncio.Event()

    def _go_on(self) -> bool:
        return not (self.d.stopping.is_set() or self.d.stats.halted or self.lease_lost)

    def elapsed(self) -> timedelta:
        """How long this pass has run, on the event loop's monotonic clock."""
        return timedelta(seconds=asyncio.get_running_loop().time() - self.started)

    def lease_until(self) -> datetime:
        """The lease a claim or a renewal gives now: lease_seconds from this moment."""
        # Counted from the pass's `now` plus the time it has run, so that `tick --now` (a
        # simulated time) and the injected clock of tests lease consistently with claim_due.
        return self.now + self.elapsed() + self.lease

    async def run(self) -> None:
        """Run the pass with its leases renewed; then write this node's heartbeat."""
        self.started = asyncio.get_running_loop().time()
        renewer = asyncio.create_task(self.renew())
        failure: BaseException | None = None
        try:
            await self.stages()
        except BaseException as err:
            failure = err
            raise
        finally:
            self.finished.set()
            with contextlib.suppress(Exception):
                await renewer
            if not isinstance(failure, asyncio.CancelledError):
                await self.beat(failure)

    async def stages(self) -> None:
        """Start the stages, feed them, and wind them down in order."""
        recorder = asyncio.create_task(self.record())
        workers = [asyncio.create_task(self.connection()) for _ in range(self.settings.connections)]
        claimer = asyncio.create_task(self.claim())
        try:
            await self.produce()
            await claimer
        finally:
            if not claimer.done():
                claimer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await claimer
            for _ in workers:
                await self.jobs.put(None)
            await self.join_workers(workers)
            self.outcomes.put_nowait(None)
            await recorder
            if self.unsent:
                await self.d.store.release(self.d.node, self.unsent)

    async def claim(self) -> None:
        """Claim batches with a lease, one batch ahead of planning."""
        # Running ahead lets the database round trips overlap the sending instead of stalling
        # the workers between batches.
        size = self.settings.batch_size
        store = self.d.store
        try:
            while self._go_on():
                batch = await store.claim_due(self.now, size, self.d.node, self.lease_until())
                self.report.claimed += len(batch)
                if not batch:
                    break
                await self.claimed.put((batch, await store.progress([s.id for s in batch])))
                if len(batch) < size:
                    break
        except asyncio.CancelledError:
            # Cancelled only once produce() has ended: nobody reads the queue any more, and
            # waiting to put the end mark on it would hang the pass.
            raise
        except BaseException:
            await self.claimed.put(None)
            raise
        await self.claimed.put(None)

    async def renew(self) -> None:
        """Every lease_seconds / 3, extend the leases this pass holds (one UPDATE)."""
        # A node that dies stops renewing, so its claims pass to others within a lease; one
        # that lives keeps them however long its pass runs (a long backlog, a slow relay).
        loop = asyncio.get_running_loop()
        every = self.lease.total_seconds() / 3
        held_until = loop.time() + self.lease.total_seconds()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), every)
                return
            asked = loop.time()
            try:
                await self.d.store.renew(
                    self.d.node, self.first_lease, self.lease_until(), self.now + self.elapsed()
                )
            except Exception as err:
                if loop.time() + every < held_until:
                    log.warning("could not renew this node's leases (%s); trying again", err)
                    continue
                # Past this point another node may take them: sending on would send twice.
                log.error("could not renew this node's leases in time: this pass stops (%s)", err)
                self.lease_lost = True
                return
            held_until = asked + self.lease.total_seconds()

    async def beat(self, failure: BaseException | None) -> None:
        """Write this node's heartbeat and how the pass went, for `status`."""
        stats = self.d.stats
        if failure is not None:
            # The class only: a database error's text carries SQL parameters (addresses).
            result = f"failed: {type(failure).__name__}"
        else:
            halted = f" (halted: {stats.halted})" if stats.halted is not None else ""
            result = f"{self.report}{halted}"
        seen = self.now + self.elapsed()
        beat = Beat(
            name=self.d.node,
            started_at=self.now,
            seen_at=seen,
            last_pass_at=self.now,
            last_pass_seconds=self.elapsed().total_seconds(),
            last_pass_result=result[:500],
            failing_since=stats.failing_since,
            last_error=None if stats.failing_since is None else (stats.last_error or "")[:500],
        )
        try:
            await self.d.store.beat(beat)
        except Exception as err:
            # The pass itself says what went wrong with the database; one line is enough.
            log.debug("heartbeat not written: %s", err)

    async def produce(self) -> None:
        """Plan each claimed subscriber; a job to the workers, or an outcome straight away."""
        while (item := await self.claimed.get()) is not None:
            batch, recorded = item
            for number, sub in enumerate(batch, 1):
                if number % _PLAN_SLICE == 0:
                    # Planning is pure CPU and never waits while the job queue has room: let
                    # the pages and health checks on the same loop in between.
                    await asyncio.sleep(0)
                    await self.d.foreground.turn()
                if not self._go_on():
                    self.unsent.append(sub.id)
                    continue
                try:
                    job = self.d.plan(sub, recorded[sub.id], self.sequences, self.now)
                except Exception:
                    log.exception("cannot prepare a message for subscriber %d", sub.id)
                    continue
                if job.build is None:
                    await self.window.acquire()
                    self.outcomes.put_nowait(self.d.policy.outcome(job, None, self.now))
                else:
                    await self.jobs.put(job)

    async def connection(self) -> None:
        """One long-lived connection and the senders that share it."""
        # A connection that queues sends (the sender process's) gets `depth` senders: the
        # next message is handed over while the current one is on the wire.
        connection = await self.d.transport.connect()
        depth: int = getattr(connection, "depth", 1)
        try:
            await asyncio.gather(*(self.work(connection) for _ in range(depth)))
        finally:
            await connection.close()

    async def work(self, connection: Connection) -> None:
        """One sender: one send at a time over `connection`."""
        while (job := await self.jobs.get()) is not None:
            assert job.build is not None
            if not self._go_on():
                self.unsent.append(job.subscriber.id)
                continue
            await self.d.limiter.acquire()
            await self.d.foreground.turn()  # a page in flight goes first
            await self.window.acquire()
            try:
                # Built now, not when planned: its Date is the moment of hand-over.
                composed = job.build(self.d.clock())
                result = await connection.send(composed.envelope)
                if result.delivered:
                    self.d.stats.delivered(self.now)
                elif result.failure_class == "transient":
                    self.d.stats.failed(self.now, str(result))
                self.outcomes.put_nowait(self.d.policy.outcome(job, result, self.now))
            except TransportConfigError as err:
                self.window.release()
                self.d.halt(err)
                self.unsent.append(job.subscriber.id)
            except Exception:
                self.window.release()
                # One bad subscriber (say, a timezone removed from tzdata) must not
                # stall the whole pass; the lease runs out and it is tried again.
                log.exception("sending to subscriber %d failed", job.subscriber.id)
        # One end mark per connection: pass it on to this connection's other senders.
        self.jobs.put_nowait(None)

    async def record(self) -> None:
        """Commit outcomes in batches of commit_every, or after FLUSH_SECONDS at most."""
        batch = _Batch(self, self.settings.commit_every)
        loop = asyncio.get_running_loop()
        deadline = 0.0
        while True:
            try:
                if batch.pending:
                    timeout = max(deadline - loop.time(), 0)
                    item = await asyncio.wait_for(self.outcomes.get(), timeout)
                else:
                    item = await self.outcomes.get()
                    deadline = loop.time() + FLUSH_SECONDS
            except TimeoutError:
                await batch.flush()
                continue
            # Take everything already waiting, so a busy pass commits in full batches.
            while item is not None:
                await batch.add(item)
                if self.outcomes.empty():
                    break
                item = self.outcomes.get_nowait()
            if item is None:
                break
        await batch.flush()

    async def join_workers(self, workers: list[asyncio.Task[None]]) -> None:
        """Wait for the workers; when stopping, cut them off after the grace period."""
        pending = set(workers)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            if pending and self.d.stopping.is_set():
                grace = self.settings.shutdown_grace_seconds
                _, pending = await asyncio.wait(pending, timeout=grace)
                for task in pending:
                    task.cancel()
                for task in pending:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                while not self.jobs.empty():
                    job = self.jobs.get_nowait()
                    if job is not None:
                        self.unsent.append(job.subscriber.id)
                return
        for task in workers:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


class _Batch:
    """Outcomes waiting for one commit; each holds a slot of the duplicate window."""

    def __init__(self, run: Pass, size: int) -> None:
        self.run = run
        self.size = size
        self.pending: list[Outcome] = []

    async def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self.run.report.results[label(outcome)] += 1
        if len(self.pending) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await self.run.d.store.record(self.pending, self.run.now)
            for _ in self.pending:
                self.run.window.release()
            self.pending = []


def label(outcome: Outcome) -> str:
    """The result name an outcome is counted under."""
    if isinstance(outcome, Sent):
        return "sent"
    if isinstance(outcome, Retry):
        return "retry"
    return outcome.status
