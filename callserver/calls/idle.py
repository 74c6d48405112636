"""Silence handling: when the caller says nothing for a while, ask once, then end the call.

The clock restarts whenever the caller starts or stops speaking, presses a key, or the agent
finishes a response (silence is counted from the end of the agent's turn, not from its start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from callserver.engines.signals import Signal

log = logging.getLogger(__name__)

CALLER_SIGNALS = frozenset({"caller_activity", "caller_said", "dtmf"})
"""The caller did something: the silence (and the one prompt) starts over."""

PROMPT = (
    "The caller has been silent for a while. Ask once, briefly and politely, whether they "
    "are still there."
)


class IdleWatch:
    """Fed the call's signals; prompts once after ``timeout_s`` of silence, then ends."""

    def __init__(
        self,
        timeout_s: float,
        *,
        prompt: Callable[[str], Awaitable[None]],
        end: Callable[[], None],
        call_id: str,
    ) -> None:
        self._timeout_s = timeout_s
        self._prompt = prompt
        self._end = end
        self._call_id = call_id
        self._last = time.monotonic()
        self._responding = False
        self._prompted = False

    def on_signal(self, signal: Signal) -> None:
        kind = signal.kind
        if kind == "agent_started":
            self._responding = True
        elif kind == "agent_done":
            self._responding = False
        elif kind in CALLER_SIGNALS:
            self._prompted = False
        else:
            return
        self._last = time.monotonic()

    async def run(self) -> None:
        """Runs for the life of the session; cancelled by its owner (the call session)."""
        while True:
            wait = self._last + self._timeout_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self._responding:  # the agent is talking: that is not silence
                self._last = time.monotonic()
                continue
            if not self._prompted:
                log.info("caller silent: prompting", extra={"call_id": self._call_id})
                self._prompted = True
                self._last = time.monotonic()
                await self._prompt(PROMPT)
                continue
            log.info("caller still silent: ending the call", extra={"call_id": self._call_id})
            self._end()
            return
