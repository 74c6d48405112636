"""Holding a control connection's events back, for a call moving between instances.

When a call is handed over while both instances are attached, each sees the same event
stream, and exactly one may act on any event. The instance taking over attaches *held*:
it reads and keeps events without acting. The leaving instance then stops acting (its gate
closes), finishes what it started, and names the last event it handed to its session. The
new owner drops its kept events up to and including that one and acts on the rest. Events
are matched by ``event_id`` where they carry one, and by position otherwise.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Gate(Generic[T]):
    """Open: events pass. Closed: events are kept, in order, until ``open_after``."""

    def __init__(self, *, held: bool = False) -> None:
        self.is_open = not held
        self.kept: collections.deque[T] = collections.deque()
        self.changed = asyncio.Event()
        self.last_passed: str | None = None
        """The ``event_id`` of the last event let through (None before any)."""

    def close(self) -> str | None:
        """Stop letting events through; returns the id of the last one that went through."""
        self.is_open = False
        self.changed.set()
        return self.last_passed

    def open_after(self, event_id: str | None, id_of: Callable[[T], str | None]) -> int:
        """Drop kept events up to and including ``event_id`` (if kept), open; returns how
        many were dropped (the leaving instance acted on those)."""
        dropped = 0
        if event_id is not None and any(id_of(e) == event_id for e in self.kept):
            while self.kept:
                dropped += 1
                if id_of(self.kept.popleft()) == event_id:
                    break
        self.is_open = True
        self.changed.set()
        return dropped

    def passed(self, event_id: str | None) -> None:
        if event_id is not None:
            self.last_passed = event_id

    async def wait_changed(self) -> None:
        self.changed.clear()
        await self.changed.wait()
