"""The Twilio dialer: Twilio's Calls API places the call; the answer is bridged to OpenAI.

1. ``POST Calls.json`` (once, never retried) with the answer URL and status callback URL,
   optionally with answering-machine detection (``MachineDetection``).
2. Status callbacks (``/twilio/outbound/status``) report ringing, and terminal statuses
   (busy, no-answer, failed, canceled) end the call with that outcome, on any instance.
3. When the callee answers, Twilio fetches the answer URL (``/twilio/outbound/answer``): we
   answer TwiML that ``<Dial>``s OpenAI's SIP connector with the signed correlation header,
   or ``<Hangup/>`` when detection found a machine and the graph says ``hangup``.
4. OpenAI's incoming-call webhook for that leg is matched by the header (``intake.py``) and
   handed to the waiting call (``bridge.py``), which accepts it with the outbound graph.

If no bridge and no terminal status arrive within the ring timeout plus a grace period,
Twilio is asked what became of the call, and the call is cancelled there.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from callserver.calls.outbound import DialFailed, Placement, maybe_placed, twilio_outcome
from callserver.calls.records import CallRecord
from callserver.calls.registry import CallRegistry
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph
from callserver.outbound.bridge import BridgeBoard
from callserver.outbound.twilio_api import (
    AUTH_ERRORS,
    CallOrder,
    TwilioCallsApi,
    TwilioRefused,
    TwilioUnknown,
)
from callserver.webhooks.openai import IncomingCall
from callserver.webhooks.twilio import TERMINAL_STATUSES

log = logging.getLogger(__name__)

ANSWER_PATH = "/twilio/outbound/answer"
STATUS_PATH = "/twilio/outbound/status"
BRIDGE_GRACE_S = 20.0
"""After the ring timeout: how long an answered leg may take to reach us through OpenAI."""


class TwilioDialer:
    """Implements ``calls.outbound.OutboundDialer`` with Twilio's Calls API."""

    name = "twilio"

    def __init__(
        self,
        api: TwilioCallsApi,
        board: BridgeBoard,
        registry: CallRegistry,
        *,
        public_base_url: str,
        machine_detection: bool,
    ) -> None:
        self.api = api
        self._board = board
        self._registry = registry
        self._base = public_base_url.rstrip("/")
        self._machine_detection = machine_detection

    def urls(self, record: CallRecord) -> tuple[str, str]:
        """(answer URL, status callback URL) of one call; Twilio signs what it requests."""
        query = urlencode({"attempt": record.call_id, "engine": record.engine})
        return f"{self._base}{ANSWER_PATH}?{query}", f"{self._base}{STATUS_PATH}?{query}"

    async def place(
        self, record: CallRecord, built: BuiltGraph, context: CallToolContext
    ) -> Placement:
        info = record.outbound
        assert info is not None
        answer_url, status_url = self.urls(record)
        detect = info.get("machine_detection")
        if detect is None:
            detect = self._machine_detection
        mode = None
        if detect:
            mode = "DetectMessageEnd" if info.get("on_voicemail") == "leave_message" else "Enable"
        order = CallOrder(
            to=info["to"],
            from_=info["from"],
            answer_url=answer_url,
            status_url=status_url,
            ring_timeout_s=int(info.get("ring_timeout_s") or 30),
            machine_detection=mode,
        )
        info["outcome"] = "unknown"  # until Twilio answers: a call may be placed
        try:
            sid = await self.api.create(order)
        except TwilioRefused as exc:
            info.pop("outcome", None)
            log.warning("twilio refused the call: %s", exc, extra={"call_id": record.call_id})
            outcome = "rejected" if exc.status in AUTH_ERRORS else "failed"
            raise DialFailed(outcome, f"Twilio refused the call: {exc}") from None
        except TwilioUnknown as exc:
            raise maybe_placed(record.call_id, "Twilio", str(exc)) from None
        info.pop("outcome", None)
        info["placed"] = True
        info["twilio_call_sid"] = sid
        record.twilio_call_sid = sid
        await self._registry.link_call_sid(sid, record.call_id)
        wait_s = float(info.get("ring_timeout_s") or 30) + BRIDGE_GRACE_S

        async def bridge() -> IncomingCall:
            return await self._bridge(record, sid, wait_s)

        return Placement(bridge=bridge)

    async def _bridge(self, record: CallRecord, sid: str, wait_s: float) -> IncomingCall:
        bridged = await self._board.wait(record.call_id, wait_s)
        if bridged is not None:
            if record.outbound is not None and bridged.answered_by:
                record.outbound["twilio_answered_by"] = bridged.answered_by
            return bridged.call
        status = await self.api.status(sid)
        if status not in TERMINAL_STATUSES:
            await self.api.cancel(sid)
        log.warning(
            "no bridged leg within %.0fs (Twilio says %s)",
            wait_s,
            status,
            extra={"call_id": record.call_id},
        )
        if status is None:
            raise DialFailed("unknown", "Twilio did not say what became of the call")
        answered = status in ("in-progress", "completed")
        outcome = "failed" if answered else twilio_outcome(status, answered=False)
        raise DialFailed(outcome, f"no bridged leg reached OpenAI (Twilio: {status})")

    async def aclose(self) -> None:
        await self.api.aclose()

    async def cancel(self, record: CallRecord) -> None:
        sid = (record.outbound or {}).get("twilio_call_sid")
        if sid:
            await self.api.cancel(sid)
