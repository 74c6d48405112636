"""Keypad presses on a live call, turned into the actions of the graph's ``dtmf:`` map.

The session hands every signal of the call to :meth:`Keypad.on_signal`, which must not
block or raise (it runs inside the session's event loop iteration), so it only queues the
key. One task (:meth:`Keypad.run`, owned and cancelled by the call session) consumes the
queue, keeps the inter-digit timer and runs actions one after another, so a handoff is sent
before the message that the next key produces.

Matching: a key that starts no ``#``-terminated sequence acts at once. A key that does
starts collecting: keys are gathered until ``#`` or a pause of ``inter_digit_timeout``, then
the collected keys act as one (``123#``), or as the single key when that is all there was
(``1`` mapped and ``123#`` mapped: ``1`` acts after the pause), or go to ``unmatched``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agents.realtime import RealtimeAgent

from callserver.engines.signals import Signal
from callserver.graph.dtmf_models import DIGITS, DtmfAction, DtmfPlan

log = logging.getLogger(__name__)

MAX_SEQUENCE = 32
"""Longest sequence collected; a stuck key cannot grow the buffer without bound."""
MAX_QUEUED = 64
"""Keys waiting behind a slow action; more are dropped (a caller cannot type that fast)."""
END_REASON = "dtmf_end_call"


def pressed_text(keys: str) -> str:
    """What the agent is told for an unmapped key: it reads it as something the caller did."""
    return f"The caller pressed {keys}"


class KeypadActions(Protocol):
    """What a key can do to the call; provided by the call session."""

    async def handoff(self, agent_key: str) -> None: ...
    async def transfer(self, target: str) -> None: ...
    async def end_call(self) -> None: ...
    async def message(self, text: str) -> None: ...


class Keypad:
    """The DTMF state machine of one call."""

    def __init__(
        self,
        plan: DtmfPlan,
        actions: KeypadActions,
        *,
        call_id: str,
        pending: str = "",
        on_pending: Callable[[str], None] | None = None,
    ) -> None:
        self._plan = plan
        self._actions = actions
        self._call_id = call_id
        self._starts = plan.sequence_starts
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._on_pending = on_pending
        self._buffer = pending[:MAX_SEQUENCE]
        """Keys of an unfinished sequence; ``pending`` carries one over from another
        instance (the call moved), with a fresh inter-digit pause."""
        self._deadline = time.monotonic() + plan.inter_digit_timeout_s if pending else 0.0

    @property
    def _buffer(self) -> str:
        return self._keys

    @_buffer.setter
    def _buffer(self, keys: str) -> None:
        self._keys = keys
        if self._on_pending is not None:
            self._on_pending(keys)

    def on_signal(self, signal: Signal) -> None:
        """Queue the key of a DTMF signal; anything else (or a malformed key) is ignored."""
        if signal.kind != "dtmf":
            return
        key = signal.text
        if not isinstance(key, str) or key not in DIGITS:
            log.info("ignoring DTMF event %r", str(key)[:8], extra={"call_id": self._call_id})
            return
        if self._queue.qsize() >= MAX_QUEUED:
            log.warning("too many DTMF keys queued: dropping", extra={"call_id": self._call_id})
            return
        self._queue.put_nowait(key)

    async def run(self) -> None:
        """Runs for the life of the session; cancelled by its owner (the call session)."""
        while True:
            if self._buffer and self._queue.empty():
                wait = max(self._deadline - time.monotonic(), 0.0)
                try:
                    key = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    await self._resolve()
                    continue
            else:
                key = await self._queue.get()
            await self._press(key)

    async def _press(self, key: str) -> None:
        if self._buffer:
            self._buffer += key
            if key == "#" or len(self._buffer) >= MAX_SEQUENCE:
                await self._resolve()
            else:
                self._deadline = time.monotonic() + self._plan.inter_digit_timeout_s
            return
        if key in self._starts:
            self._buffer = key
            self._deadline = time.monotonic() + self._plan.inter_digit_timeout_s
            return
        await self._act(key)

    async def _resolve(self) -> None:
        keys, self._buffer = self._buffer, ""
        await self._act(keys)

    async def _act(self, keys: str) -> None:
        action = self._plan.keys.get(keys)
        if action is None:
            if self._plan.unmatched == "ignore":
                log.info("DTMF %s: no mapping, ignored", keys, extra={"call_id": self._call_id})
                return
            action = DtmfAction("message", pressed_text(keys))
        log.info("DTMF %s: %s", keys, action.kind, extra={"call_id": self._call_id})
        try:
            await self._run(action)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DTMF %s: %s failed", keys, action.kind, extra={"call_id": self._call_id})

    async def _run(self, action: DtmfAction) -> None:
        if action.kind == "handoff":
            await self._actions.handoff(action.value)
        elif action.kind == "transfer":
            await self._actions.transfer(action.value)
        elif action.kind == "end_call":
            await self._actions.end_call()
        else:
            await self._actions.message(action.value)


class CallControlsLike(Protocol):
    """The part of ``CallHandle`` a key needs (kept structural to avoid an import cycle)."""

    async def request_end(self, reason: str, *, after_response: bool = True) -> None: ...
    async def request_transfer(self, target_uri: str, *, reason: str = "transferred") -> None: ...


@dataclass(slots=True)
class CallKeypadActions:
    """Keypad actions for a live call: the session switches agents and relays messages,
    the call's handle ends and transfers it (through the manager's one end path)."""

    agents: Mapping[str, RealtimeAgent[Any]]
    switch_agent: Callable[[RealtimeAgent[Any]], Awaitable[None]]
    send_message: Callable[[str], Awaitable[None]]
    controls: CallControlsLike

    async def handoff(self, agent_key: str) -> None:
        await self.switch_agent(self.agents[agent_key])

    async def transfer(self, target: str) -> None:
        await self.controls.request_transfer(target, reason="dtmf")

    async def end_call(self) -> None:
        await self.controls.request_end(END_REASON, after_response=False)

    async def message(self, text: str) -> None:
        await self.send_message(text)
