"""guide/foreground.py: the pass waits (boundedly) for pages; a page's writes go first."""

from __future__ import annotations

import asyncio

from guide.foreground import Foreground, WriteTurns, in_a_page


async def test_no_page_in_flight_costs_the_pass_nothing() -> None:
    foreground = Foreground(max_wait=30)
    await asyncio.wait_for(foreground.turn(), 1)  # returns at once, however long max_wait is


async def test_the_pass_waits_until_the_pages_are_done() -> None:
    foreground = Foreground(max_wait=30)
    with foreground.request():
        assert in_a_page() and foreground.in_flight == 1
        waiting = asyncio.ensure_future(foreground.turn())
        await asyncio.sleep(0.02)
        assert not waiting.done()
    assert not in_a_page() and foreground.in_flight == 0
    await asyncio.wait_for(waiting, 1)


async def test_a_page_that_never_ends_holds_the_pass_only_for_max_wait() -> None:
    foreground = Foreground(max_wait=0.05)
    with foreground.request():
        for _ in range(3):
            await asyncio.wait_for(foreground.turn(), 5)  # bounded: a flood cannot stop it


async def test_writers_in_order_a_page_first() -> None:
    turns = WriteTurns()
    order: list[str] = []
    foreground = Foreground()

    async def write(name: str, page: bool) -> None:
        if page:
            with foreground.request():
                async with turns:
                    order.append(name)
        else:
            async with turns:
                order.append(name)

    async with turns:  # held: everyone below queues
        tasks = [
            asyncio.ensure_future(write(name, page))
            for name, page in [("pass-1", False), ("pass-2", False), ("page", True)]
        ]
        await asyncio.sleep(0.01)
        assert (turns.waiting_pages, turns.waiting_others) == (1, 2)
    await asyncio.gather(*tasks)
    assert order == ["page", "pass-1", "pass-2"]


async def test_a_cancelled_writer_never_keeps_the_turn() -> None:
    turns = WriteTurns()
    done: list[str] = []

    async def write(name: str) -> None:
        async with turns:
            done.append(name)

    async with turns:
        first = asyncio.ensure_future(write("first"))
        second = asyncio.ensure_future(write("second"))
        await asyncio.sleep(0.01)
        first.cancel()  # cancelled while waiting
    await asyncio.gather(first, second, return_exceptions=True)
    assert done == ["second"]

    # Given the turn, then cancelled before it ran: the turn passes on.
    async with turns:
        given = asyncio.ensure_future(write("given"))
        after = asyncio.ensure_future(write("after"))
        await asyncio.sleep(0.01)
    given.cancel()  # its waiter is already resolved; the task has not resumed yet
    await asyncio.gather(given, after, return_exceptions=True)
    assert given.cancelled() and done[-1] == "after"
    await asyncio.wait_for(turns.__aenter__(), 1)  # free again


async def test_other_writers_wait_while_a_page_is_in_flight() -> None:
    foreground = Foreground(max_wait=30)
    turns = WriteTurns(foreground)
    wrote: list[str] = []

    async def background() -> None:
        async with turns:
            wrote.append("pass")

    started = asyncio.Event()

    async def later() -> None:
        await started.wait()
        await background()

    # Made outside the request: a task started inside one inherits its context (a page's).
    waiting = asyncio.ensure_future(later())
    with foreground.request():
        started.set()
        await asyncio.sleep(0.02)
        assert wrote == []  # the turn is free, yet the pass does not start under a page
        async with turns:  # the page itself writes at once
            wrote.append("page")
    await asyncio.wait_for(waiting, 1)
    assert wrote == ["page", "pass"]
