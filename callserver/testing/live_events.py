"""Builders for GPT-Live sideband server events, as the Live service sends them.

Plain dicts (what goes on the wire), each with a fresh ``event_id``; every one parses as the
``openai`` package's ``ConnectServerEvent`` (``live_schemas.server_event_errors``), so a
test never feeds callserver a shape the service could not produce. The fake uses them, and
tests can send them through ``FakeSideband.send`` to script anything else.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

__all__ = [
    "backend_response",
    "delegation_created",
    "dtmf_received",
    "dtmf_sent",
    "error",
    "function_call_item",
    "input_transcript",
    "new_id",
    "output_transcript",
    "response_event",
    "session_closed",
    "session_resource",
    "session_started",
    "session_updated",
    "transport_answered",
    "transport_failed",
    "transport_ringing",
    "usage_updated",
]

Event = dict[str, Any]
SESSION_TTL_S = 2 * 60 * 60


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _event(kind: str, **fields: Any) -> Event:
    return {"type": kind, "event_id": new_id("event"), **fields}


def session_resource(session_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``SessionResource`` for an accepted config (always ``status: active``)."""
    resource: dict[str, Any] = {
        "id": session_id,
        "expires_at": int(time.time()) + SESSION_TTL_S,
        "model": (config or {}).get("model", "gpt-live-1"),
        "status": "active",
    }
    for key in ("audio", "delegation", "input", "instructions", "safety_identifier", "store"):
        if config and key in config:
            resource[key] = config[key]
    return resource


def session_started(resource: dict[str, Any]) -> Event:
    return _event("session.started", session=resource)


def session_updated(resource: dict[str, Any], client_event_id: str | None = None) -> Event:
    return _event("session.updated", session=resource, **_echo(client_event_id))


def session_closed(resource: dict[str, Any], reason: str, seconds: float) -> Event:
    """Terminal: ``reason`` in close_requested, expired, content, remote_hangup,
    connection_lost; ``seconds`` is the cumulative billable duration."""
    return _event("session.closed", reason=reason, session=resource, usage={"seconds": seconds})


def usage_updated(seconds: float) -> Event:
    return _event("session.usage.updated", usage={"seconds": seconds})


def output_transcript(delta: str, start_ms: int, end_ms: int) -> Event:
    return _event("session.output_transcript.delta", delta=delta, start_ms=start_ms, end_ms=end_ms)


def input_transcript(delta: str, start_ms: int, end_ms: int) -> Event:
    return _event("session.input_transcript.delta", delta=delta, start_ms=start_ms, end_ms=end_ms)


def appended(kind: str, start_ms: int, client_event_id: str | None) -> Event:
    """``session.{instructions,thinking,commentary}.appended`` for an append command."""
    return _event(f"{kind}ed", start_ms=start_ms, end_ms=start_ms, **_echo(client_event_id))


def delegation_created(
    delegation_id: str, target: str, offset_ms: int, response_id: str | None = None
) -> Event:
    delegation: dict[str, Any] = {"id": delegation_id, "type": "delegation", "target": target}
    if response_id is not None:
        delegation["response_id"] = response_id
    return _event("session.delegation.created", offset_ms=offset_ms, delegation=delegation)


def response_event(delegation_id: str | None, inner: dict[str, Any]) -> Event:
    """A nested Responses streaming event from the Live session's backend."""
    return _event("response.event", delegation_id=delegation_id, event=inner)


def backend_response(
    response_id: str, status: str, *, usage: dict[str, int] | None = None, sequence: int = 0
) -> dict[str, Any]:
    """A lifecycle snapshot (``response.created`` / ``response.completed``): as on Live, with
    ``output: []``, ``tools: []`` and no instructions; read function calls from items."""
    kind = "response.created" if status == "in_progress" else f"response.{status}"
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "status": status,
        "output": [],
        "tools": [],
        "instructions": None,
    }
    if usage is not None:
        response["usage"] = usage
    return {"type": kind, "sequence_number": sequence, "response": response}


def function_call_item(
    name: str,
    arguments: dict[str, Any] | str,
    call_id: str,
    *,
    output_index: int = 0,
    sequence: int = 1,
) -> dict[str, Any]:
    """A nested ``response.output_item.done`` carrying one completed ``function_call``."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "type": "response.output_item.done",
        "output_index": output_index,
        "sequence_number": sequence,
        "item": {
            "type": "function_call",
            "id": new_id("fc"),
            "call_id": call_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        },
    }


def dtmf_received(key: str) -> Event:
    return _event("transport.dtmf.received", event=key)


def dtmf_sent(key: str, client_event_id: str | None) -> Event:
    return _event("transport.dtmf.sent", event=key, **_echo(client_event_id))


def transport_ringing(session_id: str) -> Event:
    """Outbound SIP: the callee's phone rings (or gives early media)."""
    return _event("transport.ringing", session_id=session_id)


def transport_answered(session_id: str) -> Event:
    """Outbound SIP: the callee answered; media is established."""
    return _event("transport.answered", session_id=session_id)


def transport_failed(session_id: str, code: str, message: str) -> Event:
    """Outbound SIP: the call could not be set up (``code`` is not enumerated by OpenAI)."""
    return _event(
        "transport.failed",
        session_id=session_id,
        error={"type": "call_error", "code": code, "message": message},
    )


def error(
    code: str, message: str, *, client_event_id: str | None = None, param: str | None = None
) -> Event:
    body: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
    if param is not None:
        body["param"] = param
    if client_event_id is not None:
        body["client_event_id"] = client_event_id
    return _event("error", error=body)


def _echo(client_event_id: str | None) -> dict[str, Any]:
    return {"client_event_id": client_event_id} if client_event_id else {}
