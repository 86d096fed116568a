"""The due index also holds lease_until, so a claim skips leased rows without reading them.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Rebuild ix_subscribers_due as (status, next_due_at, lease_until)."""
    # A claim walks the due rows in next_due_at order and skips those another batch of the
    # pass has leased. With lease_until only in the table, each skipped row was a lookup of
    # its own: a pass runs a thousand or two leased rows ahead, so every SQLite claim of 200
    # spent 5-15 ms on lookups while holding the one writer. One transaction (on both
    # databases), so no claim ever runs without the index.
    op.drop_index("ix_subscribers_due", table_name="subscribers")
    op.create_index("ix_subscribers_due", "subscribers", ["status", "next_due_at", "lease_until"])


def downgrade() -> None:
    """Back to (status, next_due_at)."""
    op.drop_index("ix_subscribers_due", table_name="subscribers")
    op.create_index("ix_subscribers_due", "subscribers", ["status", "next_due_at"])
