"""The per-call object tools talk to (``CallControls``): end or transfer *this* call.

Tools run inside the SDK session, which the call task owns; ending the call from inside a
tool by cancelling that task would cancel the tool itself. So requests made here are
scheduled on the manager, and "end after the goodbye" waits for the agent turn that follows
the tool's output to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from callserver.engines.signals import Signal

log = logging.getLogger(__name__)

EndFn = Callable[[str, bool], None]
TransferFn = Callable[[str, str], Awaitable[None]]

GOODBYE_GRACE_S = 15.0
"""If no response follows an end request within this time, hang up anyway."""


class CallHandle:
    """Implements ``callserver.graph.context.CallControls`` for one call."""

    def __init__(
        self,
        call_id: str,
        *,
        schedule_end: EndFn,
        transfer: TransferFn,
        grace_s: float = GOODBYE_GRACE_S,
    ) -> None:
        self.call_id = call_id
        self._schedule_end = schedule_end
        self._transfer = transfer
        self._grace_s = grace_s
        self._pending_reason: str | None = None
        self._target_response: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def request_end(self, reason: str, *, after_response: bool = True) -> None:
        if not after_response:
            self._fire(reason)
            return
        if self._pending_reason is None:
            self._pending_reason = reason
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._grace_s, self._fire, reason)
            log.info("end requested after the current response", extra={"call_id": self.call_id})

    async def request_transfer(self, target_uri: str, *, reason: str = "transferred") -> None:
        """Transfer now. The end reason is always ``transferred`` (a bounded label); which
        tool asked is in the logs and the call's tool list."""
        del reason
        await self._transfer(target_uri, "transferred")

    def on_signal(self, signal: Signal) -> None:
        """Fed the call's signals; ends the call once the goodbye turn is done."""
        if self._pending_reason is None:
            return
        if signal.kind == "agent_started" and self._target_response is None:
            self._target_response = signal.ref
        elif signal.kind == "agent_done" and signal.ref == self._target_response:
            self._fire(self._pending_reason)

    def _fire(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending_reason = None
        self._schedule_end(reason, True)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
