"""Build the service's parts from the configuration: store, lessons, composer, transport."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delivery.compose import Composer
from delivery.dkim import DKIMSigner, aligned
from delivery.lessoncheck import render_problems
from delivery.message import MessageFactory
from delivery.transports import MaildirTransport, MemoryTransport, SMTPTransport, Transport
from delivery.transports.process import ProcessTransport
from guide.clock import Clock, system_clock
from guide.config import Config
from guide.foreground import Foreground
from guide.library import LessonLibrary
from guide.private import private_folder
from guide.store import Store
from guide.tokens import LinkSigner, make_signer
from scheduler.dispatch import Dispatcher
from scheduler.failures import describe
from scheduler.ratelimit import RateLimiter, SharedRateLimiter
from web.context import WebContext

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def node_name() -> str:
    """Who holds a lease: unique per process, readable in the database."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


def make_transport(config: Config) -> Transport:
    """The transport the configuration names."""
    if config.transport == "smtp":
        if config.dispatch.sender_process:
            return ProcessTransport(config)
        return SMTPTransport(config.smtp)
    if config.transport == "memory":
        return MemoryTransport()
    return MaildirTransport(config.maildir_path)


def make_composer(config: Config, signer: LinkSigner | None = None) -> Composer:
    """The composer every email goes through, signing with DKIM when it is configured."""
    dkim = DKIMSigner(config.dkim) if config.dkim.enabled else None
    if dkim is not None and not aligned(config.dkim.domain, config.sender.domain):
        # Signed, but receivers enforcing DMARC judge the From domain: the signature won't count.
        log.warning(
            "dkim.domain %s is not aligned with the From domain %s (sender.address): "
            "DMARC receivers will not count this signature",
            config.dkim.domain,
            config.sender.domain,
        )
    factory = MessageFactory(config, TEMPLATES)
    return Composer(config, factory, signer or make_signer(config), dkim)


def make_limiter(config: Config, store: Store | None = None) -> RateLimiter:
    """The send-rate limit of dispatch.rate_per_second and rate_per_hour (also after a reload).

    On PostgreSQL it is kept in the database, shared by every node: the relay's rate.
    """
    rates = config.dispatch.rate_per_second, config.dispatch.rate_per_hour
    if store is not None and store.dialect == "postgresql":
        return SharedRateLimiter(*rates, store)
    return RateLimiter(*rates)


@dataclass
class Parts:
    """Everything a command needs, built once from the configuration."""

    config: Config
    store: Store
    library: LessonLibrary
    composer: Composer
    transport: Transport
    dispatcher: Dispatcher

    @property
    def signer(self) -> LinkSigner:
        """The link signer of this deployment."""
        return self.composer.signer

    @property
    def clock(self) -> Clock:
        """The clock every part reads."""
        return self.dispatcher.clock

    async def close(self) -> None:
        """Release this node's leases and close the database."""
        try:
            await self.store.release(self.dispatcher.node)
            await self.store.node_stopped(self.dispatcher.node, self.clock())
        except Exception as err:
            # A stop while the database is away still ends cleanly; the leases run out.
            log.warning(
                "leases not released (they expire after dispatch.lease_seconds): %s",
                describe(err, self.config) or f"{type(err).__name__}: {err}",
            )
        await self.transport.close()
        await self.store.close()


async def build(
    config: Config, *, clock: Clock = system_clock, transport: Transport | None = None
) -> Parts:
    """Open the store (migrating it), load lessons, and wire the dispatcher."""
    if config.state_dir.exists():
        # A folder left 0755 (an old install, a hand-made one) is tightened before use.
        private_folder(config.state_dir, "state_dir")
    library = LessonLibrary(config.lessons_dir)
    library.load()  # a broken lesson file stops here, before anything is written to state_dir
    # Keys first: a weak link secret is a configuration error found before the database opens.
    composer = make_composer(config)
    # What `lessons check` refuses (a lesson that cannot be composed, or too big to send), a
    # running service refuses too: at start, and at a reload, which keeps the last good ones.
    library.verify_with(lambda found: render_problems(composer, found, clock()))
    # One per process: the pages' requests in flight, which the pass and its writes wait for.
    foreground = Foreground()
    store = await Store.open(
        config.database_url, sqlite_path=config.sqlite_path, foreground=foreground
    )
    transport = transport or make_transport(config)
    if isinstance(transport, MaildirTransport):
        transport.ensure()
    dispatcher = Dispatcher(
        config=config,
        store=store,
        library=library,
        composer=composer,
        transport=transport,
        clock=clock,
        node=node_name(),
        limiter=make_limiter(config, store),
        foreground=foreground,
    )
    return Parts(config, store, library, composer, transport, dispatcher)


def web_context(parts: Parts, scheduler_running: Callable[[], bool] = lambda: True) -> WebContext:
    """What the web pages need, from the parts."""
    return WebContext(
        config=parts.config,
        store=parts.store,
        library=parts.library,
        composer=parts.composer,
        transport=parts.transport,
        clock=parts.clock,
        stats=parts.dispatcher.stats,
        scheduler_running=scheduler_running,
        foreground=parts.dispatcher.foreground,
    )
