"""`bounces ingest` (one report on stdin, for a pipe transport) and `bounces poll` (a Maildir)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from cli.context import pass_config
from delivery.mailboxes import maildir_messages, read_limited
from delivery.verp import ReturnPath
from guide.clock import system_clock
from guide.config import Config
from guide.errors import GuideError
from guide.redact import redact
from guide.store import Store
from guide.tokens import link_secret
from scheduler.bounces import BounceProcessor

# sysexits.h: a pipe transport (Postfix, procmail) keeps the message and tries again later.
EX_TEMPFAIL = 75


@click.group("bounces")
def bounces_group() -> None:
    """Read bounce reports that come back after the relay accepted a message."""


@bounces_group.command("ingest")
@click.option(
    "--recipient",
    multiple=True,
    help="the address the report was delivered to (Postfix pipe: ${recipient})",
)
@pass_config
def ingest_command(config: Config, recipient: tuple[str, ...]) -> int:
    """Read one message on stdin; exit 0 when handled or ignored, 75 if the database is down."""
    data = read_limited(sys.stdin.buffer)

    async def ingest(processor: BounceProcessor) -> None:
        await processor.handle(data, recipient)

    return _run(config, ingest)


@bounces_group.command("poll")
@click.option(
    "--maildir",
    "maildir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="a Maildir the bounce address delivers to; read messages move from new/ to cur/",
)
@pass_config
def poll_command(config: Config, maildir: Path) -> int:
    """Read every new message of a Maildir once, moving each one read to cur/."""
    messages = maildir_messages(maildir)

    async def poll(processor: BounceProcessor) -> None:
        for message in messages:
            data = await asyncio.to_thread(message.read)
            # Moved only once handled: a database failure leaves it for the next poll.
            await processor.handle(data)
            await asyncio.to_thread(message.done)

    return _run(config, poll)


def _run(config: Config, work: Callable[[BounceProcessor], Awaitable[None]]) -> int:
    """Open the store, run `work`, print the summary line; EX_TEMPFAIL if the database fails."""
    # Only what reading reports needs: a broken lesson file must not bounce the bounces.
    return_path = ReturnPath.from_config(config.bounces, config.sender.domain, link_secret(config))

    async def run() -> int:
        try:
            store = await Store.open(config.database_url, sqlite_path=config.sqlite_path)
        except GuideError as err:  # also a refused password: the mail waits while it is fixed
            click.echo(
                f"bounces: database unavailable, try again later: {redact(str(err))}", err=True
            )
            return EX_TEMPFAIL
        processor = BounceProcessor(store, return_path, system_clock)
        try:
            await work(processor)
        except SQLAlchemyError as err:
            message = redact(str(err).splitlines()[0])
            click.echo(f"bounces: database unavailable, try again later: {message}", err=True)
            return EX_TEMPFAIL
        finally:
            await store.close()
            click.echo(processor.tally.line())
        return 0

    return asyncio.run(run())
