"""The ``call.ended`` event a customer's backend receives after each call.

Built from the finalised :class:`~callserver.calls.records.CallRecord` once, at the end of the
call, so the event is a snapshot: later changes to in-memory state cannot alter what is
delivered on a retry hours later. Phone numbers follow the redaction policy because the
event leaves our infrastructure.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from callserver.calls.records import CallRecord

log = logging.getLogger(__name__)

EVENT_TYPE = "call.ended"
SCHEMA_VERSION = 1


class EventSink(Protocol):
    """What the end listener hands events to (an :class:`~callserver.records.outbox.Outbox`)."""

    def submit(self, event: dict[str, Any], *, webhook_id: str | None = None) -> str: ...


def last4(number: str | None) -> str | None:
    """The last four digits of a number or SIP user part: enough to recognise, not to dial."""
    if not number:
        return None
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[-4:] or None


def event_webhook_id(call_id: str, event_type: str = EVENT_TYPE) -> str:
    """A webhook id derived from the call, so reporting the same call twice is one event
    (the outbox ignores a second enqueue of an id it already has)."""
    digest = hashlib.sha256(f"{event_type}\x00{call_id}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).isoformat(timespec="milliseconds")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _turn(turn: Any) -> dict[str, Any]:
    """A transcript turn as JSON, whether the record keeps dicts or small objects."""
    keys = ("role", "agent", "text", "at", "item_id")
    if isinstance(turn, dict):
        return {k: turn[k] for k in keys if k in turn}
    return {k: getattr(turn, k) for k in keys if getattr(turn, k, None) is not None}


def _transcript(record: CallRecord) -> list[dict[str, Any]]:
    turns = getattr(record, "transcript", None)
    if turns is None:
        turns = getattr(record, "turns", None)
    return [_turn(t) for t in turns or ()]


OUTBOUND_EVENT_KEYS = (
    "id", "dialer", "outcome", "answered_by", "campaign_id", "row", "attempt", "error",
    "twilio_call_sid",
)  # fmt: skip
"""What an outbound call's event says about the attempt; its numbers are ``caller`` (ours)
and ``dialed`` (the callee), under the redaction policy like every call's."""


def _outbound(record: CallRecord) -> dict[str, Any] | None:
    info = record.outbound
    if not info:
        return None
    return {key: info.get(key) for key in OUTBOUND_EVENT_KEYS}


def build_call_ended_event(record: CallRecord, *, redact_numbers: bool) -> dict[str, Any]:
    """The ``call.ended`` payload, in the Standard Webhooks envelope (type, timestamp, data).

    With ``redact_numbers`` the caller and dialed numbers are null and only their last four
    digits are sent. Tool call start times are offsets from the start of the call (the record
    keeps monotonic clock values, meaningless outside this process).
    """
    duration = record.duration_s()
    ring = None
    talk = None
    if record.accepted_mono is not None:
        ring = record.accepted_mono - record.created_mono
        talk = duration - ring
    ended_at = record.created_at + duration
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "call_id": record.call_id,
        "caller": None if redact_numbers else record.caller,
        "dialed": None if redact_numbers else record.dialed,
        "caller_last4": last4(record.caller),
        "dialed_last4": last4(record.dialed),
        "numbers_redacted": redact_numbers,
        "twilio_call_sid": record.twilio_call_sid,
        "graph": record.graph,
        "route": record.route,
        "config_hash": record.config_hash,
        "agents_visited": list(record.agents_visited),
        "final_agent": record.current_agent,
        "handoffs": record.handoffs,
        "guardrail_trips": record.guardrail_trips,
        "tool_calls": [
            {
                "name": t.name,
                "agent": t.agent,
                "started_offset_s": _seconds(max(t.started_at - record.created_mono, 0.0)),
                "duration_s": _seconds(t.duration_s),
                "outcome": t.outcome,
            }
            for t in record.tool_calls
        ],
        "transcript": _transcript(record),
        "end_reason": record.end_reason,
        "errors": list(record.errors),
        "started_at": _iso(record.created_at),
        "ended_at": _iso(ended_at),
        "durations": {
            "total_s": _seconds(duration),
            "ring_s": _seconds(ring),
            "talk_s": _seconds(talk),
        },
        "usage": dict(record.usage),
        "direction": record.direction,
        "outbound": _outbound(record),
    }
    return {"type": EVENT_TYPE, "timestamp": _iso(ended_at), "data": data}


def call_ended_listener(
    sink: EventSink, *, redact_numbers: bool | Callable[[], bool]
) -> Callable[[CallRecord], None]:
    """An end listener for :attr:`CallManager.end_listeners` that hands each finished call's
    event to ``sink`` (an Outbox, whose ``submit`` persists it in the background).

    ``redact_numbers`` may be a callable so a config reload changes the policy without
    re-registering the listener. The event is built synchronously, while the record is final.
    """

    def on_call_ended(record: CallRecord) -> None:
        redact = redact_numbers() if callable(redact_numbers) else redact_numbers
        event = build_call_ended_event(record, redact_numbers=redact)
        sink.submit(event, webhook_id=event_webhook_id(record.call_id))

    return on_call_ended
