"""Turns on GPT-Live, inferred from transcript fragments.

Live sends ``session.{input,output}_transcript.delta`` fragments and nothing that marks where
a turn begins or ends (full duplex: both sides may speak at once). The agents SDK and the
call path want turns (output guardrails accumulate per turn; "hang up after the goodbye"
waits for the goodbye to end; the record keeps turns), so a turn is what comes between
pauses: the first fragment opens one, and ``gap_s`` without a fragment from that side closes
it. Pure bookkeeping: the sideband model feeds it and emits what it returns.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

from agents.realtime.model_events import (
    RealtimeModelEvent,
    RealtimeModelInputAudioTranscriptionCompletedEvent,
    RealtimeModelOtherEvent,
    RealtimeModelTranscriptDeltaEvent,
    RealtimeModelTurnEndedEvent,
    RealtimeModelTurnStartedEvent,
)

from callserver.engines.signals import CALLER_ACTIVITY, Signal

ACTIVITY_EVERY_S = 1.0
"""A long caller turn still counts as activity at least this often (idle timeout)."""


@dataclasses.dataclass(slots=True)
class _Turn:
    ref: str
    parts: list[str]
    deadline: float


def _signal(signal: Signal) -> RealtimeModelOtherEvent:
    return RealtimeModelOtherEvent(data=signal)


class TurnTracker:
    """Opens and closes the agent's and the caller's turns from their transcript fragments."""

    def __init__(self, gap_s: float, clock: Callable[[], float]) -> None:
        self._gap_s = gap_s
        self._clock = clock
        self._numbers = itertools.count(1)
        self._agent: _Turn | None = None
        self._caller: _Turn | None = None
        self._activity_at = -math.inf

    @property
    def agent_speaking(self) -> bool:
        return self._agent is not None

    def output(self, delta: str) -> list[RealtimeModelEvent]:
        """An agent transcript fragment: opens the agent's turn if none is open."""
        events: list[RealtimeModelEvent] = []
        now = self._clock()
        turn = self._agent
        if turn is None:
            turn = self._agent = _Turn(f"live_turn_{next(self._numbers)}", [], now)
            events.append(RealtimeModelTurnStartedEvent(response_id=turn.ref))
            events.append(_signal(Signal("agent_started", ref=turn.ref)))
        turn.parts.append(delta)
        turn.deadline = now + self._gap_s
        events.append(
            RealtimeModelTranscriptDeltaEvent(item_id=turn.ref, delta=delta, response_id=turn.ref)
        )
        return events

    def input(self, delta: str) -> list[RealtimeModelEvent]:
        """A caller transcript fragment: opens the caller's turn if none is open."""
        events: list[RealtimeModelEvent] = []
        now = self._clock()
        turn = self._caller
        if turn is None:
            turn = self._caller = _Turn(f"live_caller_{next(self._numbers)}", [], now)
        turn.parts.append(delta)
        turn.deadline = now + self._gap_s
        if now - self._activity_at >= ACTIVITY_EVERY_S:
            self._activity_at = now
            events.append(_signal(CALLER_ACTIVITY))
        return events

    def next_deadline(self) -> float | None:
        deadlines = [t.deadline for t in (self._agent, self._caller) if t is not None]
        return min(deadlines) if deadlines else None

    def due(self) -> list[RealtimeModelEvent]:
        """Close every turn whose side has been quiet for ``gap_s``."""
        now = self._clock()
        events: list[RealtimeModelEvent] = []
        if self._caller is not None and self._caller.deadline <= now:
            events += self._close_caller()
        if self._agent is not None and self._agent.deadline <= now:
            events += self._close_agent()
        return events

    def new_response(self) -> list[RealtimeModelEvent]:
        """The backend was asked for a new response (after tool outputs, or a message): what
        the agent says next is a new turn, even without a pause in between."""
        return self._close_agent() if self._agent is not None else []

    def close_all(self) -> list[RealtimeModelEvent]:
        """The session is over: whatever was open has ended."""
        events: list[RealtimeModelEvent] = []
        if self._caller is not None:
            events += self._close_caller()
        if self._agent is not None:
            events += self._close_agent()
        return events

    def _close_agent(self) -> list[RealtimeModelEvent]:
        assert self._agent is not None
        turn, self._agent = self._agent, None
        text = "".join(turn.parts).strip()
        return [
            RealtimeModelTurnEndedEvent(response_id=turn.ref),
            _signal(Signal("agent_done", ref=turn.ref)),
            _signal(Signal("agent_said", text=text, ref=turn.ref)),
        ]

    def _close_caller(self) -> list[RealtimeModelEvent]:
        assert self._caller is not None
        turn, self._caller = self._caller, None
        text = "".join(turn.parts).strip()
        return [
            RealtimeModelInputAudioTranscriptionCompletedEvent(item_id=turn.ref, transcript=text),
            _signal(Signal("caller_said", text=text, ref=turn.ref)),
        ]
