"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Subscriber lifecycle (DESIGN.md): pending → active ⇄ paused → completed; any → unsubscribed;
# bounced (hard bounce); held (policy refusal, needs an operator); undeliverable (retries ran
# out); erased (GDPR: personal data removed, the address hash kept to honour the unsubscribe).
STATUSES = (
    "pending",
    "active",
    "paused",
    "completed",
    "unsubscribed",
    "bounced",
    "held",
    "undeliverable",
    "erased",
)

# SQLite's INTEGER PRIMARY KEY is its rowid; PostgreSQL wants a 64-bit identity.
ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        # SQLite stores text; naive UTC text sorts and compares correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()


def _subscriber_ref() -> Column[int]:
    """The column tying a delivery or an audit event to its subscriber."""
    return Column(
        "subscriber_id", ID, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
    )


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sequence_id", String(64), nullable=False),
    Column("email", String(320), nullable=True),  # NULL once erased
    Column("email_hash", String(64), nullable=False),
    Column("name", String(100), nullable=False, server_default=""),
    Column("timezone", String(64), nullable=False),
    Column("send_time", String(5), nullable=False),  # local HH:MM
    Column("status", String(16), nullable=False),
    Column("discreet", Boolean, nullable=False, server_default="0"),
    # Whose help lines the footer shows: an ISO 3166 code, "other", or "" (not chosen).
    Column("country", String(8), nullable=False, server_default=""),
    Column("generation", Integer, nullable=False, server_default="0"),  # +1 on restart
    Column("repeats", Integer, nullable=False, server_default="0"),  # +1 on repeat
    Column("next_due_at", UTCDateTime, nullable=True),
    Column("last_sent_at", UTCDateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("first_failure_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("sequence_id", "email_hash", name="uq_subscribers_sequence_email"),
    # lease_until too: a claim skips leased rows from the index alone (migration 0004).
    Index("ix_subscribers_due", "status", "next_due_at", "lease_until"),
    # Never reuse the id of a deleted (unconfirmed) sign-up: links carry subscriber ids.
    sqlite_autoincrement=True,
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    _subscriber_ref(),
    Column("generation", Integer, nullable=False),
    Column("lesson_id", String(100), nullable=False),
    Column("kind", String(8), nullable=False),  # sent | skipped
    Column("message_id", String(200), nullable=True),
    Column("sent_at", UTCDateTime, nullable=False),
    UniqueConstraint("subscriber_id", "generation", "lesson_id", name="uq_deliveries_once"),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    _subscriber_ref(),
    Column("at", UTCDateTime, nullable=False),
    Column("old_status", String(16), nullable=True),
    Column("new_status", String(16), nullable=True),
    Column("actor", String(32), nullable=False),  # cli, web, dispatch, import
    Column("reason", Text, nullable=False, server_default=""),
    Index("ix_events_subscriber", "subscriber_id"),
)

# What the running nodes write about themselves: heartbeats and the shared send-rate budget.
# Kept apart from `metadata` because it is not data about people: a backup counts, and
# migrate-to copies, only the tables of `metadata`; these start empty on a new database and
# fill again within a pass.
runtime = MetaData()

nodes = Table(
    "nodes",
    runtime,
    Column("name", String(64), primary_key=True),  # a lease owner: host:pid
    Column("started_at", UTCDateTime, nullable=False),
    # Written at the end of each pass and by the lease renewal during a long one.
    Column("seen_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("last_pass_at", UTCDateTime, nullable=True),
    Column("last_pass_seconds", Float, nullable=True),
    Column("last_pass_result", Text, nullable=True),
    # Since when every send of this node has failed (the relay), and the last error.
    Column("failing_since", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
)

rate_buckets = Table(
    "rate_buckets",
    runtime,
    Column("name", String(32), primary_key=True),  # per_second, per_hour
    Column("tokens", Float, nullable=False),
    Column("stamp", UTCDateTime, nullable=False),
)

# Renewal and `status` find a node's leases without scanning every subscriber: only leased
# rows are in this index, so it stays as small as the work in flight.
leased_index = Index(
    "ix_subscribers_leased",
    subscribers.c.lease_owner,
    subscribers.c.lease_until,
    sqlite_where=subscribers.c.lease_owner.is_not(None),
    postgresql_where=subscribers.c.lease_owner.is_not(None),
)
