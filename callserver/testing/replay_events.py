"""Reading recorded events the way a replay needs them, on either engine: where turns
start, which events call tools, where the control connection dropped.

Pure functions over event dicts and cassette entries, so the pacing in
:mod:`~callserver.testing.replay_call` and the checks after the call read a recording alike.
"""

from __future__ import annotations

import json
from typing import Any

from callserver.records.cassette_reader import Entry

__all__ = [
    "drop_positions",
    "event_shape",
    "function_call",
    "our_own_close",
    "parsed_arguments",
    "starts_turn",
]


def parsed_arguments(arguments: Any) -> Any:
    """Tool arguments compared as JSON values, so whitespace and key order do not matter."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments or "{}")
        except ValueError:
            return arguments
    return arguments


def drop_positions(entries: list[Entry]) -> set[int]:
    """For each recorded ``control: lost``, the index (among ws frames) of the next frame."""
    positions: set[int] = set()
    count = 0
    for entry in entries:
        if entry.kind in ("ws_in", "ws_out"):
            count += 1
        elif entry.kind == "control" and entry.data.get("event") == "lost":
            positions.add(count)
    return positions


def our_own_close(event: dict[str, Any]) -> bool:
    """A Live ``session.closed`` that callserver's own hangup caused."""
    return event.get("type") == "session.closed" and event.get("reason") == "close_requested"


def starts_turn(event: dict[str, Any]) -> bool:
    """A new model turn: a Realtime response, or a Live delegation to the backend."""
    return event.get("type") in ("response.created", "session.delegation.created")


def function_call(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """(call id, tool name, arguments) of a server event that calls a tool, on either
    engine: Realtime's ``response.function_call_arguments.done``, or a Live backend's
    ``response.output_item.done`` function_call item nested in a ``response.event``."""
    if event.get("type") == "response.function_call_arguments.done":
        fields: dict[str, Any] = event
    elif event.get("type") == "response.event":
        inner = event.get("event") or {}
        fields = inner.get("item") or {} if inner.get("type") == "response.output_item.done" else {}
        if fields.get("type") != "function_call":
            return None
    else:
        return None
    return str(fields.get("call_id")), str(fields.get("name")), str(fields.get("arguments") or "")


def event_shape(event: dict[str, Any]) -> tuple[Any, Any]:
    """(type, item type): what makes two events the same kind, so a mismatch between them
    is reported as a difference in content rather than as the wrong event."""
    return event.get("type"), (event.get("item") or {}).get("type")
