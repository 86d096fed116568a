"""Subscribers choose the country whose help lines their footer shows.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add subscribers.country; existing rows get '' (not chosen: footer.default_country)."""
    # ADD COLUMN with a constant default: SQLite and PostgreSQL both fill existing rows
    # without rewriting the table, so the upgrade is quick at any size.
    op.add_column(
        "subscribers",
        sa.Column("country", sa.String(8), nullable=False, server_default=""),
    )


def downgrade() -> None:
    """Drop subscribers.country."""
    # A plain DROP COLUMN (SQLite 3.35+), not batch mode: batch copies the table and drops
    # the old one, and with foreign keys on, dropping subscribers cascades to every delivery
    # and event (and loses AUTOINCREMENT). tests/test_db_revisions.py keeps them.
    op.drop_column("subscribers", "country")
