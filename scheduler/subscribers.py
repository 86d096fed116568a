"""Subscriber lifecycle actions shared by the CLI and the web pages; each one is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from guide.errors import LifecycleError
from guide.lessons import Sequence
from guide.progress import CLOSING_ID, finished, next_lesson
from guide.records import NewSubscriber, Subscriber
from guide.store import Store
from scheduler.schedule import next_send_time, parse_send_time

# Statuses from which `resume` makes someone active again (an operator's decision for the last
# three: the relay refused them, and only a person can tell whether that has changed).
RESUMABLE = ("paused", "held", "undeliverable", "bounced", "completed")
# Rows `add_many` commits together: large enough that commits cost little, small enough that
# an interrupted import loses little and holds SQLite's write lock only briefly.
IMPORT_BATCH = 1000


def first_due(
    subscriber: Subscriber | NewSubscriber, now: datetime, cadence_days: int = 1
) -> datetime:
    """When the next lesson may go, honouring one-per-local-day after the last send."""
    last = subscriber.last_sent_at if isinstance(subscriber, Subscriber) else None
    return next_send_time(
        tz=ZoneInfo(subscriber.timezone),
        send_time=parse_send_time(subscriber.send_time),
        now=now,
        last_sent_at=last,
        cadence_days=cadence_days,
    )


def _cadence(sequences: dict[str, Sequence], sequence_id: str) -> int:
    sequence = sequences.get(sequence_id)
    return sequence.cadence_days if sequence else 1


async def add(
    store: Store, new: NewSubscriber, *, now: datetime, actor: str, status: str = "active"
) -> tuple[Subscriber, bool]:
    """Add someone (active: first lesson at their next send time); existing ones are unchanged."""
    due = first_due(new, now) if status == "active" else None
    return await store.add(new, status=status, now=now, next_due_at=due, actor=actor)


async def add_many(
    store: Store,
    news: Iterable[NewSubscriber],
    *,
    now: datetime,
    actor: str,
    status: str = "active",
    batch: int = IMPORT_BATCH,
) -> AsyncIterator[list[bool]]:
    """`add` for many people, a transaction per `batch`; yields each batch's added flags."""
    # A transaction per row is an fsync per row (460 rows/s); one per batch keeps the
    # commit cost flat while a failure still loses at most one batch, which a re-run
    # (idempotent: present rows are left alone) completes.
    pending = iter(news)
    while chunk := list(islice(pending, batch)):
        rows = [(new, first_due(new, now) if status == "active" else None) for new in chunk]
        yield await store.add_many(rows, status=status, now=now, actor=actor)


# A fresh start: what a failing or finished run left behind is cleared.
_FRESH = {"attempts": 0, "first_failure_at": None, "last_error": None}


async def sign_up(
    store: Store,
    new: NewSubscriber,
    *,
    now: datetime,
    actor: str,
    sequence_ids: Iterable[str] = (),
) -> Subscriber | None:
    """A web sign-up: the pending subscriber to send a confirmation to, or None to send nothing.

    None for people already receiving, for erased addresses (erasure promised never to email
    them again) and for bounced ones (the mailbox does not exist), in this sequence or in any
    of `sequence_ids`: a row is kept per sequence and address.
    """
    for sequence_id in sequence_ids:
        other = await store.find(new.email, sequence_id)
        if other is not None and other.status in ("erased", "bounced"):
            return None
    sub, created = await add(store, new, now=now, actor=actor, status="pending")
    if created:
        return sub
    choices = {
        "name": new.name,
        "timezone": new.timezone,
        "send_time": new.send_time,
        "discreet": new.discreet,
        "country": new.country,
        # The pending period restarts, or the purge could delete the row while the link
        # just sent is still valid.
        "created_at": now,
    }
    if sub.status == "pending":
        return await _set(store, sub, now=now, actor=actor, reason="signed up again", **choices)
    if sub.status in ("active", "paused", "erased", "bounced"):
        return None
    # Coming back after leaving or finishing: start afresh once they confirm.
    return await _set(
        store,
        sub,
        now=now,
        actor=actor,
        status="pending",
        reason="signed up again",
        email=new.email,
        generation=sub.generation + 1,
        repeats=0,
        next_due_at=None,
        confirmed_at=None,
        **_FRESH,
        **choices,
    )


async def confirm(store: Store, subscriber: Subscriber, *, now: datetime, actor: str) -> Subscriber:
    """Double opt-in done: activate; the first lesson goes at the next send time."""
    if subscriber.status != "pending":
        return subscriber
    return await _set(
        store,
        subscriber,
        now=now,
        actor=actor,
        status="active",
        reason="confirmed",
        next_due_at=first_due(subscriber, now),
        confirmed_at=now,
    )


async def pause(store: Store, subscriber: Subscriber, *, now: datetime, actor: str) -> Subscriber:
    """Stop sending until resumed."""
    if subscriber.status != "active":
        raise LifecycleError(
            f"only active subscribers can be paused (this one is {subscriber.status})"
        )
    return await _set(store, subscriber, now=now, actor=actor, status="paused", next_due_at=None)


async def resume(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
) -> Subscriber:
    """Send again from the next lesson, at the next send time."""
    if subscriber.status not in RESUMABLE:
        raise LifecycleError(f"cannot resume a subscriber who is {subscriber.status}")
    recorded = (await store.progress([subscriber.id]))[subscriber.id]
    sequence = sequences.get(subscriber.sequence_id)
    if subscriber.status == "completed" and sequence and finished(sequence, recorded):
        raise LifecycleError("every lesson has been sent; use restart to begin again")
    return await _reactivate(store, subscriber, sequences, now=now, actor=actor)


async def restart(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
) -> Subscriber:
    """Begin the sequence again from day 1 (earlier deliveries stay in the history)."""
    if subscriber.status in ("unsubscribed", "erased", "pending"):
        raise LifecycleError(f"cannot restart a subscriber who is {subscriber.status}")
    return await _reactivate(
        store,
        subscriber,
        sequences,
        now=now,
        actor=actor,
        reason="restarted",
        generation=subscriber.generation + 1,
        repeats=0,
    )


async def skip(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
) -> str:
    """Skip the next lesson; returns its id."""
    if subscriber.status in ("unsubscribed", "erased"):
        # Recording lessons for someone who left (or was erased) would rebuild their history.
        raise LifecycleError(f"cannot skip a lesson for a subscriber who is {subscriber.status}")
    sequence = sequences.get(subscriber.sequence_id)
    if sequence is None:
        raise LifecycleError(f"sequence {subscriber.sequence_id!r} is not in the lesson library")
    recorded = (await store.progress([subscriber.id]))[subscriber.id]
    lesson_id = next_lesson(sequence, recorded)
    if lesson_id is None:
        raise LifecycleError("there is no lesson left to skip")
    await store.skip(subscriber, lesson_id, now)
    await store.change(subscriber.id, now=now, actor=actor, reason=f"skipped {lesson_id}")
    return lesson_id


async def repeat(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
) -> str:
    """Send the last lesson again at the next send time; returns its id."""
    if subscriber.status in ("unsubscribed", "erased", "pending", "bounced"):
        raise LifecycleError(f"cannot repeat a lesson for a subscriber who is {subscriber.status}")
    sent, _ = await store.history(subscriber.id)
    current = [
        row
        for row in sent
        if row["generation"] == subscriber.generation and row["lesson_id"] != CLOSING_ID
    ]
    sequence = sequences.get(subscriber.sequence_id)
    if current and sequence and current[-1]["lesson_id"] not in sequence.positions:
        # After a switch (or an edit that removed it) the last delivery is not in this
        # sequence: forgetting it would not send it again now, only after switching back.
        raise LifecycleError("your most recent lesson is not part of these readings")
    if current and current[-1]["kind"] == "skipped" and any(r["kind"] == "sent" for r in current):
        # The next lesson goes after the last one recorded, so the skipped one would come
        # next instead of the repeat; un-skipping it could send something they chose to avoid.
        raise LifecycleError("a lesson was skipped after the last one sent; nothing to repeat now")
    # The closing email is kept: a completed subscriber gets their last lesson, not the goodbye.
    lesson_id = await store.unrecord_last(subscriber, keep=(CLOSING_ID,))
    if lesson_id is None:
        raise LifecycleError("no lesson has been sent yet")
    changes: dict[str, Any] = {}
    if subscriber.status == "completed":
        changes = {
            "status": "active",
            "next_due_at": first_due(subscriber, now, _cadence(sequences, subscriber.sequence_id)),
        }
    await store.change(subscriber.id, now=now, actor=actor, reason=f"repeat {lesson_id}", **changes)
    return lesson_id


async def unsubscribe(
    store: Store, subscriber: Subscriber, *, now: datetime, actor: str
) -> Subscriber:
    """Stop for good (idempotent)."""
    if subscriber.status in ("unsubscribed", "erased"):
        return subscriber
    return await _set(
        store, subscriber, now=now, actor=actor, status="unsubscribed", next_due_at=None
    )


async def reschedule(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
    timezone: str | None = None,
    send_time: str | None = None,
    discreet: bool | None = None,
    name: str | None = None,
    country: str | None = None,
) -> Subscriber:
    """Change timezone, send time, discreet mode, name or country; the next send time follows."""
    asked = {"timezone": timezone, "send_time": send_time, "discreet": discreet, "name": name}
    asked["country"] = country
    values: dict[str, Any] = {key: value for key, value in asked.items() if value is not None}
    if subscriber.status == "active" and (timezone or send_time):
        moved = Subscriber(**{**subscriber.__dict__, **values})
        values["next_due_at"] = first_due(moved, now, _cadence(sequences, subscriber.sequence_id))
    return await _set(store, subscriber, now=now, actor=actor, reason="settings changed", **values)


async def switch_sequence(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    sequence_id: str,
    *,
    now: datetime,
    actor: str,
) -> Subscriber:
    """Move to another sequence, keeping the progress made in each.

    Deliveries are kept per (generation, lesson id) and sequences have their own lesson ids,
    so nothing is deleted and the generation stays: the next lesson is the first of the new
    sequence not yet received, and switching back continues where they left off. Active and
    paused subscribers keep their status and next send time; held, bounced and undeliverable
    ones keep theirs too (only resume changes that). A completed subscriber becomes active
    again, at the next send time. A sequence whose every lesson was sent stays finished:
    switching to it is refused. The closing email goes once per generation, so a second
    sequence finished later ends without another one.
    """
    if subscriber.status in ("pending", "unsubscribed", "erased"):
        raise LifecycleError(f"cannot switch a subscriber who is {subscriber.status}")
    sequence = sequences.get(sequence_id)
    if sequence is None:
        raise LifecycleError(f"sequence {sequence_id!r} is not in the lesson library")
    if sequence_id == subscriber.sequence_id:
        raise LifecycleError("you already receive these readings")
    recorded = (await store.progress([subscriber.id]))[subscriber.id]
    if finished(sequence, recorded):
        raise LifecycleError("you have already received every lesson of those readings")
    # One row per sequence and address: a separate sign-up to the other sequence is its own.
    if subscriber.email and await store.find(subscriber.email, sequence_id) is not None:
        raise LifecycleError(
            "this address has a separate subscription to those readings; "
            "manage it from the link in its emails"
        )
    reason = f"switched from {subscriber.sequence_id} to {sequence_id}"
    if subscriber.status == "completed":
        return await _reactivate(
            store,
            subscriber,
            sequences,
            now=now,
            actor=actor,
            reason=reason,
            sequence_id=sequence_id,
        )
    return await _set(
        store, subscriber, now=now, actor=actor, reason=reason, sequence_id=sequence_id
    )


async def export_data(store: Store, subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one subscriber (GDPR access), as JSON-ready data."""
    sent, audit = await store.history(subscriber.id)

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in row.items()
            if k != "subscriber_id"
        }

    record = {
        k: v.isoformat() if isinstance(v, datetime) else v for k, v in subscriber.__dict__.items()
    }
    return {
        "subscriber": record,
        "deliveries": [plain(r) for r in sent],
        "events": [plain(r) for r in audit],
    }


async def _reactivate(
    store: Store,
    subscriber: Subscriber,
    sequences: dict[str, Sequence],
    *,
    now: datetime,
    actor: str,
    **values: Any,
) -> Subscriber:
    """Active again from the next send time, with any failure history cleared."""
    cadence = _cadence(sequences, values.get("sequence_id", subscriber.sequence_id))
    return await _set(
        store,
        subscriber,
        now=now,
        actor=actor,
        status="active",
        next_due_at=first_due(subscriber, now, cadence),
        **_FRESH,
        **values,
    )


async def _set(
    store: Store, subscriber: Subscriber, *, now: datetime, actor: str, **values: Any
) -> Subscriber:
    updated = await store.change(subscriber.id, now=now, actor=actor, **values)
    if updated is None:
        raise LifecycleError(f"subscriber {subscriber.id} no longer exists")
    return updated
