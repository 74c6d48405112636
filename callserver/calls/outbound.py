"""Outbound calls on the call path: what the manager needs to run a call a dialer placed.

A dialer (``callserver.outbound``: GPT-Live's own, or Twilio's) places the call; from then on
it is a call like any other: same record, same session, same end path, same post-call event.
This module holds the engine-neutral pieces the manager uses for that: the dialer seam, the
plan for one call, the outbound call's progress (dialing -> ringing -> answered -> ended) and
its final outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from callserver.calls.records import CallRecord
from callserver.engines.signals import Signal
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.spec import BuiltGraph, GraphSpec
from callserver.webhooks.openai import IncomingCall

log = logging.getLogger(__name__)

Outcome = Literal["completed", "busy", "no_answer", "failed", "voicemail", "rejected", "unknown"]
OUTCOMES: tuple[str, ...] = (
    "completed", "busy", "no_answer", "failed", "voicemail", "rejected", "unknown",
)  # fmt: skip
"""Every outbound call ends in one of these."""
UNANSWERED_OUTCOMES = frozenset({"busy", "no_answer", "failed", "rejected", "unknown"})
"""Outcomes that are also the call's end reason: the leg never reached anyone."""
END_REASONS: frozenset[str] = frozenset({*UNANSWERED_OUTCOMES, "voicemail"})
MACHINE = frozenset({"machine", "voicemail", "screening"})
"""``answered_by`` values that mean no person took the call."""

SignalListener = Callable[[Signal], None]
EndFn = Callable[[str, str, bool], None]
"""(call id, reason, hangup): schedule the one end path."""


class DialFailed(Exception):
    """Placing the call ended it: ``outcome`` says how (``rejected`` and ``failed`` mean no
    call was placed; ``unknown`` means one may have been)."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome: Outcome = outcome
        self.detail = detail


def maybe_placed(call_id: str, who: str, detail: str) -> DialFailed:
    """A dialer's request with no final answer (timeout, dropped, 5xx): logged once, and the
    ``unknown`` outcome to raise; never retried, since a call may ring."""
    log.error(
        "%s create outcome unknown (%s): a call may have been placed; not retried",
        who,
        detail,
        extra={"call_id": call_id},
    )
    return DialFailed("unknown", f"{detail}: the call may have been placed; not retried")


class OutboundRefused(Exception):
    """The call was not placed at all (nothing dialed): ``reason`` is ``capacity``,
    ``draining`` or ``registry``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(slots=True)
class Placement:
    """What a dialer's request gave: the engine's call (GPT-Live: the session exists and
    is attached at once), or a wait for the bridged call (Twilio: OpenAI's webhook for the
    SIP leg Twilio opens once the callee answered)."""

    engine_ref: str | None = None
    bridge: Callable[[], Awaitable[IncomingCall]] | None = None
    """Returns the bridged incoming call; raises DialFailed when none comes."""


class OutboundDialer(Protocol):
    """Places calls; implemented in ``callserver.outbound``."""

    name: str

    async def place(
        self, record: CallRecord, built: BuiltGraph, context: CallToolContext
    ) -> Placement:
        """Place the call (one request, never retried); raises DialFailed."""

    async def cancel(self, record: CallRecord) -> None:
        """End a call still ringing that has no engine call yet (Twilio: cancel the leg)."""


@dataclasses.dataclass(slots=True)
class OutboundPlan:
    """One outbound call, prepared by the outbound layer for :meth:`CallManager.start_outbound`."""

    record: CallRecord
    """``call_id`` = the attempt id; ``direction`` outbound; ``outbound`` filled in."""
    graph: GraphSpec
    info: CallInfo
    dialer: OutboundDialer
    config_hash: str
    ring_timeout_s: float = 30.0
    listeners: list[SignalListener] = dataclasses.field(default_factory=list)
    """Extra signal listeners for the call's session (voicemail detection)."""
    on_answered: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    placed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set once the dialer's request was answered (or the call ended before)."""


def set_state(record: CallRecord, state: str) -> None:
    if record.outbound is not None:
        record.outbound["state"] = state


def failure_outcome(code: str | None) -> Outcome:
    """An engine's failure code for an outbound leg -> an outcome (codes are not enumerated
    by OpenAI: read SIP statuses and the usual words)."""
    text = (code or "").lower()
    if any(word in text for word in ("busy", "486", "600")):
        return "busy"
    if any(
        word in text
        for word in ("no_answer", "no-answer", "noanswer", "unanswered", "timeout", "408", "480")
    ):
        return "no_answer"
    if any(word in text for word in ("declin", "reject", "603", "403", "forbidden")):
        return "rejected"
    return "failed"


class Progress:
    """An outbound call's leg, from the engine's ``call_progress`` signals: ringing and
    answered update the record; a failure ends the call with its outcome; no answer within
    the ring timeout ends it as ``no_answer``."""

    def __init__(
        self,
        record: CallRecord,
        *,
        end: EndFn,
        ring_timeout_s: float,
        on_answered: list[Callable[[], None]],
    ) -> None:
        self._record = record
        self._end = end
        self._on_answered = on_answered
        self._timer = asyncio.get_running_loop().call_later(ring_timeout_s, self._ring_out)

    def on_signal(self, signal: Signal) -> None:
        if signal.kind != "call_progress" or self._record.outbound is None:
            return
        state = self._record.outbound.get("state")
        if signal.text == "ringing" and state == "dialing":
            set_state(self._record, "ringing")
        elif signal.text == "answered" and state in ("dialing", "ringing"):
            self.answered()
        elif signal.text == "failed" and state != "ended":
            outcome = failure_outcome(signal.ref)
            self._record.outbound["outcome"] = outcome
            self._record.outbound["error"] = signal.ref
            self.close()
            self._end(self._record.call_id, outcome, False)

    def answered(self) -> None:
        if self._record.outbound is None or self._record.outbound.get("state") == "answered":
            return
        set_state(self._record, "answered")
        self._record.outbound["answered"] = True
        self._timer.cancel()
        for callback in self._on_answered:
            try:
                callback()
            except Exception:
                log.exception("answer callback failed", extra={"call_id": self._record.call_id})

    def _ring_out(self) -> None:
        if self._record.outbound is not None and self._record.outbound.get("state") in (
            "dialing",
            "ringing",
        ):
            self._record.outbound["outcome"] = "no_answer"
            self._end(self._record.call_id, "no_answer", True)

    def close(self) -> None:
        self._timer.cancel()


def settle(record: CallRecord) -> None:
    """The outcome of an outbound call whose record is being finalised (set once)."""
    info = record.outbound
    if info is None:
        return
    info["state"] = "ended"
    if info.get("outcome"):
        return
    reason = record.end_reason or ""
    if reason in END_REASONS:
        info["outcome"] = reason
    elif info.get("answered_by") in MACHINE:
        info["outcome"] = "voicemail"
    elif reason.startswith("twilio:"):
        status = reason.split(":", 1)[1]
        info["outcome"] = twilio_outcome(status, answered=bool(info.get("answered")))
    elif info.get("answered"):
        info["outcome"] = "completed"
    else:
        info["outcome"] = "failed"
        info.setdefault("error", f"ended before the callee answered ({reason or 'unknown'})")


def twilio_outcome(status: str, *, answered: bool) -> Outcome:
    """A terminal Twilio CallStatus -> outcome."""
    if status == "busy":
        return "busy"
    if status == "no-answer":
        return "no_answer"
    if status == "failed":
        return "failed"
    if status == "canceled":
        return "no_answer" if not answered else "completed"
    return "completed" if answered else "no_answer"


VIEW_KEYS = (
    "to", "from", "dialer", "outcome", "answered_by", "error", "campaign_id", "row",
    "attempt", "twilio_call_sid",
)  # fmt: skip


def view(record: CallRecord) -> dict[str, object]:
    """What the admin API shows of an outbound call: its progress first."""
    info = record.outbound or {}
    return {
        "id": record.call_id,
        "status": info.get("state"),
        **{key: info.get(key) for key in VIEW_KEYS},
        "engine_call_id": record.engine_ref,
    }
