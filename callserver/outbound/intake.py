"""The call manager's first look at every incoming call: is it the bridged leg of one of ours?

A call carrying ``X-Callserver-Outbound`` claims to be the answer of an outbound call that
Twilio placed for us. It is handed to the waiting outbound call only when the header's
signature and expiry are good and the header was not used by another call before; a forged,
expired or replayed header gets the call rejected (603) and logged, since anyone may put any
header on an INVITE to the project's SIP URI. A call without the header is not ours to look
at (``None``: the ordinary path routes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from callserver.calls.registry import CallRegistry
from callserver.engines.base import Engine
from callserver.engines.errors import ControlError
from callserver.metrics import Metrics
from callserver.outbound.bridge import BridgeBoard, Bridged
from callserver.outbound.correlation import HEADER, Correlation, CorrelationError
from callserver.webhooks.openai import IncomingCall

log = logging.getLogger(__name__)

SIP_DECLINE = 603
REJECT_TIMEOUT_S = 5.0


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in headers if k.lower() == lname), None)


class BridgeIntake:
    """``CallManager.outbound_intake``: see the module docstring."""

    def __init__(
        self,
        *,
        correlation: Correlation | None,
        board: BridgeBoard,
        registry: CallRegistry,
        engines: Mapping[str, Engine],
        metrics: Metrics,
        shared: bool,
    ) -> None:
        self._correlation = correlation
        self._board = board
        self._registry = registry
        self._engines = engines
        self._metrics = metrics
        self._shared = shared
        """Several instances share Redis: a leg may belong to a call placed elsewhere."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, call: IncomingCall) -> str | None:
        value = header(call.sip_headers, HEADER)
        if value is None:
            return None
        if self._correlation is None:
            return self._refuse(call, "no CALLSERVER_OUTBOUND_SIGNING_KEY to check it with")
        try:
            bridge = self._correlation.verify(value[:512])
        except CorrelationError as exc:
            return self._refuse(call, exc.reason)
        if bridge.engine != call.engine:
            return "other_engine"  # the same leg announced on the other API: not this one
        if not await self._registry.claim_call(call.claim_key):
            return "duplicate"
        if not await self._registry.claim_call(f"bridge:{bridge.attempt_id}"):
            return self._refuse(call, "replayed (another call already used this header)")
        bridged = Bridged(call, bridge.answered_by)
        if self._board.is_waiting(bridge.attempt_id):
            await self._board.post(bridge.attempt_id, bridged)
        elif self._shared and await self._registry.owner_of(bridge.attempt_id) is not None:
            await self._board.post(bridge.attempt_id, bridged)
        else:
            return self._refuse(call, "its outbound call is no longer waiting")
        log.info(
            "bridged leg of an outbound call",
            extra={"call_id": bridge.attempt_id, "engine_call_id": call.call_id},
        )
        return "bridged"

    def _refuse(self, call: IncomingCall, why: str) -> str:
        log.warning(
            "incoming call with an invalid %s header rejected: %s",
            HEADER,
            why,
            extra={"call_id": call.call_id},
        )
        self._metrics.webhook_rejected("outbound_correlation")
        engine = self._engines.get(call.engine)
        if engine is not None:
            task = asyncio.create_task(self._reject(engine, call.call_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return "refused"

    async def _reject(self, engine: Engine, call_id: str) -> None:
        try:
            await engine.control.reject(
                call_id, SIP_DECLINE, deadline=time.monotonic() + REJECT_TIMEOUT_S
            )
        except ControlError as exc:
            log.info("reject failed: %s", exc.detail, extra={"call_id": call_id})

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=REJECT_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
