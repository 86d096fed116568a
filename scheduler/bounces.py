"""Act on bounce reports: the subscriber comes from the signed bounce address, never the body."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from delivery.bounces import (
    BOUNCED,
    COMPLAINT,
    DELAYED,
    HELD,
    IGNORED,
    Report,
    parse_message,
    read_report,
    report_recipients,
)
from delivery.verp import BounceAddress, ReturnPath
from guide.clock import Clock
from guide.records import Subscriber
from guide.store import Store

log = logging.getLogger(__name__)
ACTOR = "bounces"
UNSUBSCRIBED = "unsubscribed"  # what a complaint does
UNCHANGED = "unchanged"  # the report came after the subscriber had already stopped
UNVERIFIED = "unverified"  # not sent to a bounce address of ours with a valid signature
# Statuses a report no longer changes: the subscriber already receives nothing.
_FINAL = {
    BOUNCED: ("bounced", "unsubscribed", "erased"),
    HELD: ("bounced", "held", "unsubscribed", "erased"),
}


@dataclass
class Tally:
    """What one run of `bounces ingest` or `bounces poll` did, for its summary line."""

    read: int = 0
    bounced: int = 0
    held: int = 0
    delayed: int = 0
    unsubscribed: int = 0
    unchanged: int = 0
    ignored: int = 0
    unverified: int = 0

    def count(self, outcome: str) -> None:
        """Count one message with this outcome."""
        self.read += 1
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self) -> str:
        """`bounces: 2 read: 1 bounced, …`, every count named, zeros too."""
        counts = ", ".join(f"{getattr(self, f.name)} {f.name}" for f in fields(self)[1:])
        return f"bounces: {self.read} read: {counts}"


@dataclass
class BounceProcessor:
    """Reads one report at a time and changes its subscriber as the report says."""

    store: Store
    return_path: ReturnPath
    clock: Clock
    tally: Tally = field(default_factory=Tally)

    async def handle(self, data: bytes, recipients: Iterable[str] = ()) -> str:
        """Process one message (`recipients`: the envelope's, when known); returns the outcome.

        Database errors propagate: the caller keeps the message to try again later.
        """
        outcome = await self._handle(data, recipients)
        self.tally.count(outcome)
        return outcome

    async def _handle(self, data: bytes, recipients: Iterable[str]) -> str:
        message = parse_message(data)
        who = self._verified(report_recipients(message, recipients))
        if who is None:
            # Anyone can send mail to the bounce address; without our signature it names no one.
            log.info("bounce address not verified: message ignored")
            return UNVERIFIED
        report = read_report(message)
        if report.outcome == IGNORED:
            log.info("message for subscriber %d ignored: %s", who.subscriber_id, report.why)
            return IGNORED
        subscriber = await self.store.get(who.subscriber_id)
        if subscriber is None or subscriber.status == "erased":
            log.info("report for subscriber %d, who is no longer stored", who.subscriber_id)
            return UNCHANGED
        if report.outcome == COMPLAINT:
            return await self._complaint(subscriber, report)
        if who.generation < subscriber.generation:
            # They signed up again since, and confirming proved the mailbox works.
            log.info(
                "report for subscriber %d about an earlier sign-up ignored: %s",
                subscriber.id,
                report.describe(),
            )
            return IGNORED
        if report.outcome == DELAYED:
            await self.store.change(
                subscriber.id,
                now=self.clock(),
                actor=ACTOR,
                reason=f"delivery delayed: {report.describe()}",
            )
            log.info("subscriber %d: delivery delayed: %s", subscriber.id, report.describe())
            return DELAYED
        return await self._stop(subscriber, report)

    def _verified(self, addresses: Iterable[str]) -> BounceAddress | None:
        for address in addresses:
            who = self.return_path.verify(address)
            if who is not None:
                return who
        return None

    async def _stop(self, subscriber: Subscriber, report: Report) -> str:
        """A permanent failure: bounced, or held when it is a policy refusal (5.7.x)."""
        outcome = report.outcome
        if subscriber.status in _FINAL[outcome]:
            log.info(
                "subscriber %d is already %s: %s",
                subscriber.id,
                subscriber.status,
                report.describe(),
            )
            return UNCHANGED
        await self._set(subscriber, outcome, f"bounce report: {report.describe()}", report)
        if outcome == HELD:
            log.error(
                "subscriber %d held: a bounce report says the receiving server refused by policy "
                "(%s); check the relay and sender reputation, then "
                "`python run.py subscribers resume %d`",
                subscriber.id,
                report.describe(),
                subscriber.id,
            )
        else:
            log.info("subscriber %d bounced: %s", subscriber.id, report.describe())
        return outcome

    async def _complaint(self, subscriber: Subscriber, report: Report) -> str:
        if subscriber.status == "unsubscribed":
            return UNCHANGED
        await self._set(subscriber, "unsubscribed", report.describe(), report)
        log.warning("subscriber %d unsubscribed: %s", subscriber.id, report.describe())
        return UNSUBSCRIBED

    async def _set(self, subscriber: Subscriber, status: str, reason: str, report: Report) -> None:
        await self.store.change(
            subscriber.id,
            now=self.clock(),
            actor=ACTOR,
            reason=reason,
            status=status,
            next_due_at=None,
            last_error=report.describe(),
        )
