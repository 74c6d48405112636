"""In-process memory of Twilio terminal statuses (the single-instance registry keeps one).

Twilio's status callbacks can overtake OpenAI's webhook for the same call; a terminal status
is remembered for a few minutes so the late webhook's call is declined. With several
instances the same memory lives in Redis (:mod:`callserver.calls.redis_sids`).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

DEFAULT_STATUS_TTL_S = 300.0
DEFAULT_MAX_REMEMBERED = 50_000


class StatusMemory:
    """Terminal statuses by SID, kept for ``ttl_s``; bounded so a flood cannot grow it."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_STATUS_TTL_S,
        max_items: int = DEFAULT_MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_items
        self._clock = clock
        self._items: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            _, (_, seen) = next(iter(self._items.items()))
            if now - seen < self._ttl and len(self._items) <= self._max:
                break
            self._items.popitem(last=False)

    def remember(self, sid: str, status: str) -> bool:
        """Record a terminal status; False if this SID already had one (first one wins)."""
        self._expire()
        if sid in self._items:
            return False
        self._items[sid] = (status, self._clock())
        self._expire()
        return True

    def forget(self, sid: str) -> None:
        """Undo :meth:`remember` (the status could not be acted on; a retry should be)."""
        self._items.pop(sid, None)

    def get(self, sid: str) -> str | None:
        self._expire()
        item = self._items.get(sid)
        return item[0] if item else None

    def __len__(self) -> int:
        self._expire()
        return len(self._items)
