"""Alembic environment: always run in-process on a connection the store hands over."""

from __future__ import annotations

from alembic import context
from alembic.util import CommandError

from guide.schema import metadata

# The service's configuration decides the database and its password (config.yaml, $DRG_*,
# credential files), so there is no alembic.ini and no URL here: the caller (Store.upgrade,
# guide/revisions.py) passes its open connection.
connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise CommandError(
        "migrations run through the service: python run.py db upgrade | db downgrade REV | "
        "db history (the alembic command line has no database to connect to)"
    )
# render_as_batch lets later migrations alter tables on SQLite too. Batch mode copies a table
# and drops the old one, which with foreign keys on cascades: prefer a plain ALTER where
# SQLite has one (DROP COLUMN since 3.35), as 0002 does.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
