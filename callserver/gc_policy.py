"""When the server's cyclic garbage collector runs (``callserver serve`` only).

CPython's default full collection walks every tracked object whenever the objects promoted
since the last one exceed a quarter of the heap. A call server's heap is its live calls
(~300 objects each, and each tool turn adds history), so while calls are up the default
runs a full collection every few seconds to a minute, and each one stops the event loop
for time in proportion to the calls carried: ~0.5 s at 2,000 calls on the bench machine,
added to the tool round trip and the accept of every call in flight.

What a full collection finds here is almost only the calls that ended: a finished call's
objects are cyclic (~360 of them; sessions, tasks and callbacks point at each other).
So the full collection runs when enough calls have *ended* to be worth it: once as many
calls ended since the last one as are live now (at least ``min_ended``), so garbage stays
below the live heap; and at least every ``max_interval_s`` while anything ended. Young
collections stay automatic, kept small because each pause grows with its generation:
measured at 2,000 calls with a tool turn every 10 s each, a first generation of 20,000 gave
60 ms young and 130-280 ms middle pauses; CPython's 700/10 gave middle ones of 20-36 ms
(20-25k objects, tool round trip p99 33 ms); 700/3 keeps them near 10 ms (p99 14 ms).
Objects promoted sooner cost nothing more: the oldest generation is only walked at turnover.
Everything loaded at start-up is frozen out of the collector's view.

The trade: with calls ending steadily, the heap may hold up to the live calls' worth of
garbage before it is freed (memory, not a leak: bounded and measured in bench/README.md).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_THRESHOLD = 700
"""Allocations between young collections: CPython's default, for short pauses (above)."""
MIDDLE_THRESHOLD = 3
"""Young collections between middle ones (CPython: 10): a third of the middle pause."""
NEVER = 2**31 - 1
"""The oldest generation's threshold: no automatic full collection."""
MIN_ENDED = 200
MAX_INTERVAL_S = 600.0


class CollectorPolicy:
    """Runs full collections after call turnover instead of after heap growth."""

    def __init__(
        self,
        live_calls: Callable[[], int],
        *,
        min_ended: int = MIN_ENDED,
        max_interval_s: float = MAX_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = lambda: gc.collect(2),
    ) -> None:
        self._live_calls = live_calls
        self._min_ended = min_ended
        self._max_interval_s = max_interval_s
        self._clock = clock
        self._collect = collect
        self._ended = 0
        self._last = clock()
        self.full_collections = 0

    @staticmethod
    def install() -> None:
        """At start-up, after everything long-lived is loaded."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NEVER)

    def call_ended(self, _record: object = None) -> bool:
        """An end listener: count the call, collect if due. True when it collected."""
        self._ended += 1
        return self.maybe_collect()

    def maybe_collect(self, *, timer: bool = False) -> bool:
        """Collect now if enough calls ended since the last collection, or if the interval
        has passed and calls ended meanwhile (``timer``: the periodic check, which also
        collects what requests left behind when no call ended). True when it collected."""
        turnover = self._ended >= max(self._min_ended, self._live_calls())
        overdue = self._clock() - self._last >= self._max_interval_s
        if not turnover and not (overdue and (self._ended or timer)):
            return False
        self._collect()
        self._ended = 0
        self._last = self._clock()
        self.full_collections += 1
        return True
