"""Where calls are tracked: an interface, and the in-process implementation.

The manager only talks to :class:`CallRegistry`, so a shared store (Redis, for several
instances) can implement the same methods. Claims and slots are atomic: in-process they run
without an ``await`` in between, so the event loop cannot interleave two of them.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Protocol

from callserver.calls.records import CallRecord
from callserver.calls.status_memory import StatusMemory


class RegistryUnavailable(RuntimeError):
    """The shared store cannot be reached (or did not answer in time).

    Raised by decisions that need the shared store: claims, slots, reads of calls owned by
    another instance. The manager maps it to "reject new calls" (calls already running are
    not affected); the store's client reconnects by itself when it is back.
    """


class CallRegistry(Protocol):
    async def claim_delivery(self, webhook_id: str) -> bool:
        """True for the first claim of a webhook delivery id (within the dedupe TTL)."""

    async def claim_call(self, call_id: str) -> bool:
        """True for the first claim of a call id: only that claimant may accept it."""

    async def acquire_slot(self, call_id: str, graph: str, graph_limit: int | None) -> bool:
        """Take a concurrency slot (global and per graph); False when full."""

    async def release_slot(self, call_id: str) -> None:
        """Give a slot back; idempotent."""

    async def put(self, record: CallRecord) -> None: ...

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def live_calls(self) -> list[CallRecord]: ...

    async def finished(self, record: CallRecord) -> None:
        """Move a record to the ended list (bounded), after it reached ENDED."""

    async def link_call_sid(self, call_sid: str, call_id: str) -> None:
        """Let a Twilio CallSid (either leg's) find the call; undone when the call ends."""

    async def by_call_sid(self, call_sid: str) -> CallRecord | None:
        """The live call a CallSid is linked to, wherever it runs."""

    async def remember_status(self, call_sid: str, status: str) -> bool:
        """Remember a terminal Twilio status for a few minutes; False if already known."""

    async def status_of(self, call_sid: str) -> str | None:
        """A remembered terminal status of this CallSid, or None."""

    async def forget_status(self, call_sid: str) -> None:
        """Undo :meth:`remember_status` (it could not be acted on; a retry should be)."""

    async def healthy(self) -> tuple[bool, str]: ...

    def is_local(self, call_id: str) -> bool:
        """True if this instance owns the live call (so ``end`` runs here, not elsewhere)."""

    async def owner_of(self, call_id: str) -> str | None:
        """Instance id owning a live call (its lease current), or None."""

    async def adopt(self, record: CallRecord, graph: str) -> None:
        """This instance now owns a live call that another one accepted (its slot too)."""

    async def forget(self, call_id: str) -> None:
        """This instance no longer owns a live call (another one took it over)."""


def min_cap(*caps: int | None) -> int:
    """The tightest of several call caps; None means "no cap" (all None: unbounded)."""
    return min((cap for cap in caps if cap is not None), default=sys.maxsize)


class _TTLSet:
    """Ids seen within ``ttl_s``; bounded so a flood of ids cannot grow memory forever."""

    def __init__(self, ttl_s: float, max_items: int = 200_000) -> None:
        self._ttl = ttl_s
        self._max = max_items
        self._items: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, key: str) -> bool:
        now = time.monotonic()
        while self._items:
            oldest, seen = next(iter(self._items.items()))
            if now - seen < self._ttl and len(self._items) < self._max:
                break
            del self._items[oldest]
        if key in self._items:
            return False
        self._items[key] = now
        return True


class InMemoryRegistry:
    """Single-process registry; state is lost on restart (use Redis for more)."""

    def __init__(
        self, *, max_calls: int, dedupe_ttl_s: float = 3600.0, keep_ended: int = 1000
    ) -> None:
        self.max_calls = max_calls
        self._deliveries = _TTLSet(dedupe_ttl_s)
        self._call_ids = _TTLSet(dedupe_ttl_s)
        self._calls: dict[str, CallRecord] = {}
        self._ended: collections.OrderedDict[str, CallRecord] = collections.OrderedDict()
        self._keep_ended = keep_ended
        self._slots: dict[str, str] = {}
        self._graph_counts: collections.Counter[str] = collections.Counter()
        self._call_sids: dict[str, str] = {}
        self._sids_of: dict[str, list[str]] = {}
        self.statuses = StatusMemory()

    async def claim_delivery(self, webhook_id: str) -> bool:
        return self._deliveries.add(webhook_id)

    async def claim_call(self, call_id: str) -> bool:
        return self._call_ids.add(call_id)

    async def acquire_slot(self, call_id: str, graph: str, graph_limit: int | None) -> bool:
        if call_id in self._slots:
            return True
        if len(self._slots) >= self.max_calls:
            return False
        if graph_limit is not None and self._graph_counts[graph] >= graph_limit:
            return False
        self._slots[call_id] = graph
        self._graph_counts[graph] += 1
        return True

    async def release_slot(self, call_id: str) -> None:
        graph = self._slots.pop(call_id, None)
        if graph is not None:
            self._graph_counts[graph] -= 1

    def slots_in_use(self) -> int:
        return len(self._slots)

    async def put(self, record: CallRecord) -> None:
        self._calls[record.call_id] = record

    async def get(self, call_id: str) -> CallRecord | None:
        return self._calls.get(call_id) or self._ended.get(call_id)

    async def live_calls(self) -> list[CallRecord]:
        return list(self._calls.values())

    async def finished(self, record: CallRecord) -> None:
        self._calls.pop(record.call_id, None)
        self._ended[record.call_id] = record
        while len(self._ended) > self._keep_ended:
            self._ended.popitem(last=False)
        for sid in self._sids_of.pop(record.call_id, ()):
            if self._call_sids.get(sid) == record.call_id:
                del self._call_sids[sid]

    async def link_call_sid(self, call_sid: str, call_id: str) -> None:
        self._call_sids[call_sid] = call_id
        self._sids_of.setdefault(call_id, []).append(call_sid)

    async def by_call_sid(self, call_sid: str) -> CallRecord | None:
        call_id = self._call_sids.get(call_sid)
        return self._calls.get(call_id) if call_id else None

    def call_sid_links(self) -> int:
        """CallSids linked to calls (tests assert this empties as calls end)."""
        return len(self._call_sids)

    async def remember_status(self, call_sid: str, status: str) -> bool:
        return self.statuses.remember(call_sid, status)

    async def status_of(self, call_sid: str) -> str | None:
        return self.statuses.get(call_sid)

    async def forget_status(self, call_sid: str) -> None:
        self.statuses.forget(call_sid)

    async def healthy(self) -> tuple[bool, str]:
        return True, "in-process registry"

    def is_local(self, call_id: str) -> bool:
        return call_id in self._calls

    async def owner_of(self, call_id: str) -> str | None:
        return "local" if call_id in self._calls else None

    async def adopt(self, record: CallRecord, graph: str) -> None:
        self._calls[record.call_id] = record
        if record.call_id not in self._slots:
            self._slots[record.call_id] = graph
            self._graph_counts[graph] += 1

    async def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        await self.release_slot(call_id)
