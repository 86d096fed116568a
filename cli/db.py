"""`db upgrade`: bring the database to the latest schema."""

from __future__ import annotations

import click

from cli.context import pass_config, with_parts
from guide.config import Config
from guide.redact import redact
from wiring import Parts


@click.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@pass_config
def upgrade_command(config: Config) -> int:
    """Apply migrations."""
    return with_parts(config, upgraded)


async def upgraded(parts: Parts) -> int:
    """Say where the database is; building the parts already applied every migration."""
    url = parts.config.database_url
    # The URL carries the password in memory ($DRG_DATABASE_PASSWORD): never print it.
    where = redact(url) if url else parts.config.sqlite_path
    click.echo(f"database at {where} is at the latest schema")
    return 0
