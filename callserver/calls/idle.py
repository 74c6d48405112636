"""Silence handling: when the caller says nothing for a while, ask once, then end the call.

The clock restarts whenever the caller starts or stops speaking, presses a key, or the agent
finishes a response (silence is counted from the end of the agent's turn, not from its start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

ACTIVITY_EVENTS = frozenset(
    {
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.dtmf_event_received",
        "conversation.item.input_audio_transcription.completed",
        "response.done",
        "response.created",
    }
)

PROMPT = (
    "The caller has been silent for a while. Ask once, briefly and politely, whether they "
    "are still there."
)


class IdleWatch:
    """Fed raw server events; prompts once after ``timeout_s`` of silence, then ends."""

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

    def on_server_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind not in ACTIVITY_EVENTS:
            return
        self._last = time.monotonic()
        if kind == "response.created":
            self._responding = True
        elif kind == "response.done":
            self._responding = False
        else:  # the caller did something
            self._prompted = False

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
