"""The record of one call: its state machine and what happened on it.

A record is created when a webhook is claimed and finalised exactly once, whatever ends the
call. Everything the post-call world needs (logs, metrics, post-call events, the admin API)
reads from it.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any


class CallState(enum.StrEnum):
    INCOMING = "incoming"
    ACCEPTING = "accepting"
    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"


_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.INCOMING: frozenset({CallState.ACCEPTING, CallState.ENDING}),
    CallState.ACCEPTING: frozenset({CallState.ACTIVE, CallState.ENDING}),
    CallState.ACTIVE: frozenset({CallState.ENDING}),
    CallState.ENDING: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass


@dataclasses.dataclass(slots=True)
class ToolCall:
    name: str
    agent: str
    started_at: float
    duration_s: float | None = None
    outcome: str = "running"


@dataclasses.dataclass(slots=True)
class CallRecord:
    """Mutable while the call lives; frozen in spirit once ``state`` is ENDED."""

    call_id: str
    engine: str = "realtime"
    """Which API runs the call (``realtime`` or ``live``); ``call_id`` is that API's id."""
    caller: str | None = None
    dialed: str | None = None
    twilio_call_sid: str | None = None
    sip_headers: list[list[str]] = dataclasses.field(default_factory=list)
    """The INVITE's SIP headers (untrusted), kept so that another instance taking the call
    over renders the same placeholders; never in summaries or events."""
    keypad_pending: str = ""
    """Keys of an unfinished DTMF sequence (carried over when the call moves)."""
    media_security: str | None = None
    """Live: the SDP-negotiated media protection OpenAI reported (``srtp``, ``rtp``, ...)."""
    twilio_status: str | None = None
    """Last Twilio CallStatus seen for the call (status callbacks), e.g. ``ringing``."""
    graph: str | None = None
    route: str | None = None
    config_hash: str | None = None
    state: CallState = CallState.INCOMING
    created_at: float = dataclasses.field(default_factory=time.time)
    created_mono: float = dataclasses.field(default_factory=time.monotonic)
    accept_sent_mono: float | None = None
    """When the first accept request left (webhook -> accept-sent is the ring-time cost)."""
    accepted_mono: float | None = None
    ending_mono: float | None = None
    ended_mono: float | None = None
    end_reason: str | None = None
    current_agent: str | None = None
    agents_visited: list[str] = dataclasses.field(default_factory=list)
    tool_calls: list[ToolCall] = dataclasses.field(default_factory=list)
    handoffs: int = 0
    guardrail_trips: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    usage: dict[str, float] = dataclasses.field(default_factory=dict)
    """Realtime: tokens summed over responses. Live: also ``seconds``, the latest cumulative
    billable duration the session reported (never summed)."""
    reattaches: int = 0
    """Times the control connection dropped and was regained (the call went on)."""
    control_gap_s: float = 0.0
    """Total time without control (between a drop and the reattach, or the end)."""
    transfer_target: str | None = None
    """Set once a REFER succeeded: the call then ends as ``transferred`` whatever closes it."""
    recording: dict[str, Any] | None = None
    """A stored engine recording (Live ``store: true``): file, bytes, or error."""
    analysis: dict[str, Any] | None = None
    """The post-call analysis once the call ended: ``{status: pending}``, then completed
    with its result or failed with its error (``records/analysis_queue.py``)."""
    transcript: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Turns as transcribed: {role: caller|agent, agent, text, at (s since start), item_id}."""
    direction: str = "inbound"
    """``inbound`` (someone called us) or ``outbound`` (a dialer placed the call)."""
    engine_ref: str | None = None
    """The engine's own id for the call when it is not ``call_id``: an outbound call is
    known by its attempt id (``out_...``) from before the engine has one (the GPT-Live
    session id, or the Realtime call id of a Twilio-bridged call)."""
    outbound: dict[str, Any] | None = None
    """Outbound calls: ``to``, ``from``, ``dialer``, ``state`` (dialing, ringing, answered,
    ended), ``outcome`` (completed, busy, no_answer, failed, voicemail, rejected, unknown),
    ``answered_by``, ``campaign_id``, ``row``, ``attempt``, ``error``, ``twilio_call_sid``."""

    @property
    def engine_id(self) -> str:
        """The id call control and the control connection use."""
        return self.engine_ref or self.call_id

    def transition(self, new: CallState) -> None:
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"{self.call_id}: {self.state} -> {new}")
        self.state = new
        if new is CallState.ACTIVE:
            self.accepted_mono = time.monotonic()
        elif new is CallState.ENDING:
            self.ending_mono = time.monotonic()
        elif new is CallState.ENDED:
            self.ended_mono = time.monotonic()

    @property
    def live(self) -> bool:
        return self.state not in (CallState.ENDING, CallState.ENDED)

    def cleanup_s(self) -> float | None:
        """From the decision to end (or the hangup being noticed) to the record finalised."""
        if self.ending_mono is None or self.ended_mono is None:
            return None
        return self.ended_mono - self.ending_mono

    def duration_s(self) -> float:
        end = self.ended_mono if self.ended_mono is not None else time.monotonic()
        return end - self.created_mono

    def visit(self, agent: str) -> None:
        self.current_agent = agent
        if not self.agents_visited or self.agents_visited[-1] != agent:
            self.agents_visited.append(agent)

    def summary(self) -> dict[str, Any]:
        """JSON-ready view for logs and the admin API (numbers stay out unless asked)."""
        return {
            "call_id": self.call_id,
            "engine": self.engine,
            "state": self.state.value,
            "graph": self.graph,
            "route": self.route,
            "current_agent": self.current_agent,
            "agents_visited": list(self.agents_visited),
            "started_at": self.created_at,
            "duration_s": round(self.duration_s(), 3),
            "end_reason": self.end_reason,
            "tool_calls": [dataclasses.asdict(t) for t in self.tool_calls],
            "handoffs": self.handoffs,
            "guardrail_trips": self.guardrail_trips,
            "errors": list(self.errors),
            "usage": dict(self.usage),
            "reattaches": self.reattaches,
            "control_gap_s": round(self.control_gap_s, 3),
            "transfer_target": self.transfer_target,
            "recording": dict(self.recording) if self.recording else None,
            "analysis": dict(self.analysis) if self.analysis else None,
            "direction": self.direction,
            "engine_call_id": self.engine_id,
            "outbound": dict(self.outbound) if self.outbound else None,
        }
