"""Pages first: a subscriber's request in flight holds the dispatch pass back for a moment.

The pages and the pass share one event loop and, on SQLite, one writer at a time. A pass at
full speed keeps the loop busy rendering and the database busy committing, and a page would
wait behind all of it: someone pressing "Stop these emails" would wait a quarter of a second
while a million lessons go out. So a page request marks itself as foreground while it runs:
the pass's senders wait (a bounded moment) before building the next message, and the page's
database writes go before the pass's queued ones. A flood of requests slows the pass; it
cannot stop it, since each wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Set inside a page request's task (and the tasks it starts): its writes go first.
_IN_A_PAGE: contextvars.ContextVar[bool] = contextvars.ContextVar("in_a_page", default=False)
# The longest a sender waits for the pages before it goes on anyway.
MAX_WAIT_SECONDS = 0.05
# Pages served this recently count as in use: the pass keeps its transactions short.
IN_USE_SECONDS = 2.0


def in_a_page() -> bool:
    """Whether the running task serves a page request."""
    return _IN_A_PAGE.get()


class Foreground:
    """Counts the page requests in flight; the pass awaits `turn()` between messages."""

    def __init__(self, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self.max_wait = max_wait
        self.in_flight = 0
        self.last_seen = float("-inf")  # time.monotonic() when the last request ended
        # Resolved when the last request in flight ends; one for all the waiting senders.
        self._quiet: asyncio.Future[None] | None = None

    @contextmanager
    def request(self) -> Iterator[None]:
        """Around one page request: in flight, and its task's writes marked as a page's."""
        token = _IN_A_PAGE.set(True)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_seen = time.monotonic()
            _IN_A_PAGE.reset(token)
            if not self.in_flight and self._quiet is not None:
                _settle(self._quiet)
                self._quiet = None

    def in_use(self) -> bool:
        """Whether a page is in flight or was served within IN_USE_SECONDS."""
        return bool(self.in_flight) or time.monotonic() - self.last_seen < IN_USE_SECONDS

    async def turn(self) -> None:
        """Return at once with no page in flight; else when they are done, or after max_wait."""
        if not self.in_flight:
            return
        if self._quiet is None:
            self._quiet = asyncio.get_running_loop().create_future()
        # A timeout leaves the shared future alone (asyncio.wait never cancels it), so under
        # a flood of requests nothing piles up for the waiters that gave up.
        await asyncio.wait([self._quiet], timeout=self.max_wait)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WriteTurns:
    """One writer at a time, in arrival order, except that a page's writes go first.

    With `foreground`, a writer that is not a page first waits its turn() there: the pass
    does not start a transaction while a page request is in flight.
    """

    def __init__(self, foreground: Foreground | None = None) -> None:
        self.foreground = foreground
        self._held = False
        self._pages: collections.deque[asyncio.Future[None]] = collections.deque()
        self._others: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting_pages(self) -> int:
        """Pages' writers waiting for their turn."""
        return len(self._pages)

    @property
    def waiting_others(self) -> int:
        """Other writers (the pass, jobs) waiting for their turn."""
        return len(self._others)

    async def __aenter__(self) -> None:
        page = in_a_page()
        if not page and self.foreground is not None:
            await self.foreground.turn()
        if not self._held and not self._pages and not self._others:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._pages if page else self._others
        queue.append(waiter)
        try:
            await waiter  # the releasing writer handed the turn over: _held stays True
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # given the turn, then cancelled: pass it on
            else:
                queue.remove(waiter)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        for queue in (self._pages, self._others):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False
