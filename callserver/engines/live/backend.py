"""The Responses backend's delegated function calls, and when the session may continue.

With tools, a Live session delegates thinking to a Responses model (the backend). Its
function calls reach the sideband nested in ``response.event`` frames; the agents SDK runs
each as a tool and hands back an output. The backend continues only on ``response.create``,
and that must come once per backend response: after it is complete (only then is every one
of its function calls known) *and* each of its calls has an output. Appending outputs alone
does not continue it; continuing early would answer with half the results.

This module keeps that bookkeeping, free of any I/O: :class:`BackendCalls` says which SDK
events a frame makes and when to send ``response.create``; the model sends.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agents.realtime.model_events import (
    RealtimeModelEvent,
    RealtimeModelOtherEvent,
    RealtimeModelToolCallEvent,
)

from callserver.engines.signals import Signal

TERMINAL_RESPONSE_EVENTS = frozenset(
    {"response.completed", "response.done", "response.incomplete", "response.failed"}
)
USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens")


@dataclasses.dataclass(slots=True)
class _Response:
    """One backend response: its function calls still waiting for an output."""

    pending: set[str] = dataclasses.field(default_factory=set)
    outputs: int = 0
    completed: bool = False
    continued: bool = False

    def ready(self) -> bool:
        """Complete, every call answered, at least one output, not continued yet."""
        return self.completed and not self.pending and bool(self.outputs) and not self.continued


@dataclasses.dataclass(slots=True)
class Step:
    """What one frame or output means: SDK events to emit, and whether to continue."""

    events: list[RealtimeModelEvent] = dataclasses.field(default_factory=list)
    respond: bool = False


class BackendCalls:
    """Function calls per backend response, across delegations; see the module docstring."""

    def __init__(self) -> None:
        self._responses: dict[str, _Response] = {}
        self._current: dict[str, str] = {}
        """delegation id -> its current backend response id."""
        self._owner: dict[str, str] = {}
        """function call id -> the backend response it belongs to."""

    @property
    def pending(self) -> int:
        """Function calls handed to the SDK that still wait for an output."""
        return len(self._owner)

    def output_sent(self, call_id: str) -> bool | None:
        """An output went back for ``call_id``: True to continue now, False to wait for more,
        None when the call is not a backend one (the caller decides)."""
        owner = self._owner.pop(call_id, None)
        response = self._responses.get(owner) if owner is not None else None
        if owner is None or response is None:
            return None
        response.pending.discard(call_id)
        response.outputs += 1
        return self._continue(owner, response)

    def event(self, message: dict[str, Any]) -> Step:
        """A ``response.event`` frame: a tool call to run, a response's end, or nothing."""
        inner = message.get("event")
        if not isinstance(inner, dict):
            return Step()
        delegation = str(message.get("delegation_id") or "-")
        kind = inner.get("type")
        response = inner.get("response") if isinstance(inner.get("response"), dict) else {}
        if kind == "response.created" and isinstance(response.get("id"), str):
            self._current[delegation] = response["id"]
            self._responses.setdefault(response["id"], _Response())
            return Step()
        if kind == "response.output_item.done":
            return Step(self._function_call(delegation, inner.get("item") or {}))
        if kind in TERMINAL_RESPONSE_EVENTS:
            return self._done(delegation, response)
        return Step()

    def _function_call(self, delegation: str, item: dict[str, Any]) -> list[RealtimeModelEvent]:
        if item.get("type") != "function_call" or not isinstance(item.get("call_id"), str):
            return []
        owner = self._current.get(delegation, f"delegation:{delegation}")
        self._responses.setdefault(owner, _Response()).pending.add(item["call_id"])
        self._owner[item["call_id"]] = owner
        return [
            RealtimeModelToolCallEvent(
                name=str(item.get("name")),
                call_id=item["call_id"],
                arguments=str(item.get("arguments") or "{}"),
                id=item.get("id") if isinstance(item.get("id"), str) else None,
            )
        ]

    def _done(self, delegation: str, response: dict[str, Any]) -> Step:
        """A backend response ended: all its function calls are known now. Continue at once
        if their outputs were all sent already; otherwise the last output continues."""
        response_id = response.get("id") if isinstance(response.get("id"), str) else None
        owner = response_id or self._current.get(delegation, f"delegation:{delegation}")
        state = self._responses.get(owner)
        respond = False
        if state is not None:
            state.completed = True
            if not state.pending and not state.outputs:
                self._responses.pop(owner, None)  # no function calls: nothing to continue
            else:
                respond = self._continue(owner, state)
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        tokens = {
            k: usage[k]
            for k in USAGE_KEYS
            if isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool)
        }
        events: list[RealtimeModelEvent] = (
            [RealtimeModelOtherEvent(data=Signal("usage", usage=tokens))] if tokens else []
        )
        return Step(events, respond)

    def _continue(self, owner: str, response: _Response) -> bool:
        if not response.ready():
            return False
        response.continued = True
        self._responses.pop(owner, None)
        return True
