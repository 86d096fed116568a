"""Where each asyncio task of a running service waits: its whole await chain, for a hang."""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

# Deeper await chains than this are a loop in the chain, not real code.
_MAX_DEPTH = 64


def task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every unfinished task of `loop` (the running one by default) with its await chain."""
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    blocks = [f"{len(tasks)} asyncio tasks"]
    for task in tasks:
        lines = [f"task {task.get_name()} ({_short(task.get_coro())}):"]
        lines += [f"  {line}" for line in await_chain(task.get_coro())]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def await_chain(awaitable: Any) -> list[str]:
    """One line per coroutine from `awaitable` down to what it waits on, innermost last."""
    # Task.get_stack() shows only the outermost coroutine of a suspended task; the frame
    # that waits is at the end of the cr_await chain.
    lines: list[str] = []
    current = awaitable
    for _ in range(_MAX_DEPTH):
        frame = _frame(current)
        if frame is None:
            lines.append(f"awaits {_short(current)}")
            break
        code = frame.f_code
        lines.append(f'File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        current = _awaited(current)
        if current is None:
            break
    return lines


def _frame(awaitable: Any) -> FrameType | None:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited(awaitable: Any) -> Any:
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, name, None)
        if inner is not None:
            return inner
    return None


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."
