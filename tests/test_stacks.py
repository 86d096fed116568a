"""wiring/stacks.py: a task's whole await chain, down to the coroutine that waits."""

from __future__ import annotations

import asyncio

from wiring.stacks import await_chain, task_stacks


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


def test_each_task_is_shown_down_to_the_coroutine_that_waits() -> None:
    async def main() -> tuple[str, list[str]]:
        event = asyncio.Event()
        task = asyncio.create_task(_outer(event), name="the-waiter")
        await asyncio.sleep(0)  # let it reach event.wait()
        text, chain = task_stacks(), await_chain(task.get_coro())
        event.set()
        await task
        return text, chain

    text, chain = asyncio.run(main())
    assert "task the-waiter (" in text
    assert text.startswith("2 asyncio tasks")  # main() and the waiter
    # Task.get_stack() would stop at _outer: the chain goes on to where it really waits.
    names = [line.rsplit(" in ", 1)[-1] for line in chain if line.startswith("File ")]
    assert names == ["_outer", "_inner", "wait"]
    assert chain[-1].startswith("awaits ")
    assert 'test_stacks.py", line' in chain[0]


def test_a_finished_coroutine_has_no_frames_to_show() -> None:
    async def nothing() -> None:
        return None

    coro = nothing()
    coro.close()
    assert await_chain(coro) == [f"awaits {coro!r}"]
