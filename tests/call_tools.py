"""Tools for end-to-end tests: observable, and slow on demand."""

from __future__ import annotations

import asyncio

RUNNING = 0
"""How many slow_lookup invocations are running right now."""
FINISHED = 0
CANCELLED = 0


async def slow_lookup(order_id: str) -> str:
    """Look up an order; takes a long time (to test hangups during a tool)."""
    global RUNNING, FINISHED, CANCELLED
    RUNNING += 1
    try:
        await asyncio.sleep(30)
        FINISHED += 1
        return f"order {order_id} shipped"
    except asyncio.CancelledError:
        CANCELLED += 1
        raise
    finally:
        RUNNING -= 1


QUICK_RUNS = 0
"""How many times quick_lookup ran to completion (a tool must never run twice)."""


async def quick_lookup(order_id: str) -> str:
    """Look up an order; takes a moment (long enough for a connection to drop meanwhile)."""
    global QUICK_RUNS
    await asyncio.sleep(0.3)
    QUICK_RUNS += 1
    return f"order {order_id} shipped"


async def long_lookup(order_id: str) -> str:
    """Look up an order; takes over a second (long enough to hand a call over meanwhile)."""
    await asyncio.sleep(1.2)
    return f"order {order_id} found"
