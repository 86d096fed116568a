"""`bounces ingest` (one report on stdin, for a pipe transport) and `bounces poll` (a Maildir)."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from cli.context import pass_config
from delivery.mailboxes import IMAPMailbox, maildir_messages, read_limited
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
    """Read one report on stdin, as a pipe transport delivers it.

    Exit 0 when it was handled or ignored, 75 (EX_TEMPFAIL) while the database is unavailable.
    """
    data = read_limited(sys.stdin.buffer)

    async def ingest(processor: BounceProcessor) -> None:
        await processor.handle(data, recipient)

    return _run(config, ingest)


@bounces_group.command("poll")
@click.option(
    "--maildir",
    "maildir",
    type=click.Path(path_type=Path, file_okay=False),
    help="a Maildir the bounce address delivers to (default: the bounces.imap mailbox)",
)
@pass_config
def poll_command(config: Config, maildir: Path | None) -> int:
    """Read new reports in a Maildir or the IMAP mailbox once.

    A Maildir's messages move from new/ to cur/; IMAP messages are marked seen (and moved to
    bounces.imap.done_folder when set). Exit 75 if the database is unavailable.
    """
    if maildir is None:
        if not config.bounces.imap.host:
            raise click.UsageError("name --maildir DIR, or set bounces.imap.host")
        return _run(config, functools.partial(_poll_imap, IMAPMailbox(config.bounces.imap)))
    messages = maildir_messages(maildir)

    async def poll(processor: BounceProcessor) -> None:
        for message in messages:
            data = await asyncio.to_thread(message.read)
            # Moved only once handled: a database failure leaves it for the next poll.
            await processor.handle(data)
            await asyncio.to_thread(message.done)

    return _run(config, poll)


async def _poll_imap(mailbox: IMAPMailbox, processor: BounceProcessor) -> None:
    """Every unseen message of the IMAP folder, each marked done once handled."""
    # imaplib blocks: each call runs in a thread, the database work stays on the loop.
    await asyncio.to_thread(mailbox.open)
    try:
        for uid in await asyncio.to_thread(mailbox.unseen):
            data = await asyncio.to_thread(mailbox.fetch, uid)
            await processor.handle(data)
            await asyncio.to_thread(mailbox.done, uid)
    finally:
        await asyncio.to_thread(mailbox.close)


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
