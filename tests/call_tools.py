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
