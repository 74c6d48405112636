"""Holding a control connection's events back, for a call moving between instances.

When a call is handed over while both instances are attached, each sees the same event
stream, and exactly one may act on any event. The instance taking over attaches *held*:
it reads and keeps events without acting. The leaving instance then stops acting (its gate
closes), finishes what it started, and names the events it handed to its session. The new
owner drops those from what it kept and acts on the rest. Events are matched by
``event_id``, not by position: an attach can interleave replayed events with live ones, so
the two instances need not have seen them in the same order. An event without an id
(Realtime DTMF) is dropped when it came before the last dropped one.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
RECENT = 512
"""Events remembered as handled: more than arrive in the seconds a hand-over takes."""


class Gate(Generic[T]):
    """Open: events pass. Closed: events are kept, in order, until ``open_after``."""

    def __init__(self, *, held: bool = False) -> None:
        self.is_open = not held
        self.kept: collections.deque[T] = collections.deque()
        self.changed = asyncio.Event()
        self.recent: collections.deque[str] = collections.deque(maxlen=RECENT)
        """The ids of the events let through lately, oldest first."""
        self.skip: frozenset[str] = frozenset()
        """Events the previous owner handled: dropped also when they arrive later here (the
        stream to one instance can lag the stream to the other)."""

    def close(self) -> list[str]:
        """Stop letting events through; returns the ids of those that went through lately."""
        self.is_open = False
        self.changed.set()
        return list(self.recent)

    def open_after(self, handled: list[str], id_of: Callable[[T], str | None]) -> int:
        """Drop the kept events the leaving instance handled, then open; returns how many
        were dropped."""
        done = set(handled)
        last = max((i for i, event in enumerate(self.kept) if id_of(event) in done), default=-1)
        keep: collections.deque[T] = collections.deque()
        self.handled(handled)  # the call's history: a next move must skip them too
        for index, event in enumerate(self.kept):
            event_id = id_of(event)
            if event_id in done or (event_id is None and index < last):
                continue
            keep.append(event)
        dropped = len(self.kept) - len(keep)
        self.kept = keep
        self.skip = frozenset(done)
        self.is_open = True
        self.changed.set()
        return dropped

    def passed(self, event_id: str | None) -> None:
        if event_id is not None:
            self.recent.append(event_id)

    def handled(self, event_ids: list[str]) -> None:
        """Events handled before this instance had the call (by its previous owners)."""
        known = set(self.recent)
        self.recent.extend(i for i in event_ids if i not in known)

    async def wait_changed(self) -> None:
        self.changed.clear()
        await self.changed.wait()


async def next_or_change(recv: Callable[[], Awaitable[T]], gate: Gate[T]) -> T | None:
    """The next frame from ``recv``; while ``gate`` holds, also wake up (None) when the gate
    changes, so kept frames are released without waiting for a new one."""
    if gate.is_open:
        return await recv()
    receiving = asyncio.ensure_future(recv())
    waiting = asyncio.ensure_future(gate.wait_changed())
    try:
        done, _ = await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if receiving in done:
        return receiving.result()
    receiving.cancel()  # safe with websockets: no frame is lost
    await asyncio.gather(receiving, return_exceptions=True)
    return None


class Gated(Protocol):
    """A control connection that can be held: what :class:`HandOver` needs of it."""

    gate: Gate[Any]
    heard: asyncio.Event


class HandOver:
    """The hand-over half of ``engines.base.EngineCall``, the same for every engine whose
    control connection carries a :class:`Gate`. Subclasses say where the connection is
    (none before attach) and how to read an event's id."""

    def _gated(self) -> Gated | None:
        raise NotImplementedError

    @staticmethod
    def _event_id(event: Any) -> str | None:
        raise NotImplementedError

    def hold(self) -> list[str]:
        connection = self._gated()
        return connection.gate.close() if connection is not None else []

    def release_after(self, handled: list[str]) -> None:
        connection = self._gated()
        if connection is not None:
            connection.gate.open_after(handled, self._event_id)

    async def heard(self, timeout: float) -> bool:
        connection = self._gated()
        if connection is None:
            return False
        try:
            await asyncio.wait_for(connection.heard.wait(), timeout)
        except TimeoutError:
            return False
        return True
