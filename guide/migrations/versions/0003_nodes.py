"""Node heartbeats, the shared send-rate budget, and an index of leased subscribers.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from guide.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_LEASED = sa.text("lease_owner IS NOT NULL")


def upgrade() -> None:
    """Create nodes and rate_buckets, and the partial index ix_subscribers_leased."""
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.Column("stopped_at", UTCDateTime, nullable=True),
        sa.Column("last_pass_at", UTCDateTime, nullable=True),
        sa.Column("last_pass_seconds", sa.Float, nullable=True),
        sa.Column("last_pass_result", sa.Text, nullable=True),
        sa.Column("failing_since", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("stamp", UTCDateTime, nullable=False),
    )
    # Only leased rows are indexed: a handful per node, however many subscribers there are.
    op.create_index(
        "ix_subscribers_leased",
        "subscribers",
        ["lease_owner", "lease_until"],
        sqlite_where=_LEASED,
        postgresql_where=_LEASED,
    )


def downgrade() -> None:
    """Drop the index and both tables; nothing in them is data about people."""
    op.drop_index("ix_subscribers_leased", table_name="subscribers")
    op.drop_table("rate_buckets")
    op.drop_table("nodes")
