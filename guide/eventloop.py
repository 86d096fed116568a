"""The event loop every process of the service runs on: uvloop where it is installed."""

from __future__ import annotations

import asyncio
import sys

# For serve: see short_gil_turns().
SWITCH_INTERVAL_SECONDS = 0.001


def install() -> str:
    """Make asyncio.run() use uvloop when it is available; the name of the loop in use.

    uvloop's libuv core spends about a sixth less CPU per message than asyncio's own loop on
    the sending path (bench/dispatch.py), which is where a high-volume pass spends its time.
    Where it is not installed (it does not build on Windows), the standard loop serves.
    """
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def short_gil_turns() -> None:
    """Give the GIL up every SWITCH_INTERVAL_SECONDS (Python's default: 5 ms); for serve.

    The loop's thread shares the GIL with the database drivers' worker threads (aiosqlite runs
    each connection on a thread): every query hands the GIL to its thread and back. Under a
    busy pass the loop never gives it up on its own, so each hand-over waited for the switch
    interval, and a page's few queries added tens of milliseconds. Batch commands (import,
    tick) keep the default: for them the extra switches are only overhead.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
