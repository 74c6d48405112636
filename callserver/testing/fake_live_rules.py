"""What the fake GPT-Live service does with each sideband client event: refuse, or answer.

First every event must validate strictly against the ``openai`` package's
``ConnectClientEvent`` union (unknown keys refused). Then the rules the types cannot express,
from the protocol digest: no ``session.start`` or audio on a sideband; appends of at most
500 tokens, whose non-null ``delegation_id`` must name a known *client* delegation and is not
accepted under Responses delegation; ``response.*`` only under Responses delegation; the
delegation type cannot change; a backend response continues only once every function call
it made has an output (the Responses API refuses to continue otherwise).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from callserver.testing import live_events as le
from callserver.testing.live_schemas import client_event_errors

if TYPE_CHECKING:
    from callserver.testing.fake_live import FakeLive
    from callserver.testing.fake_live_session import FakeLiveSession
    from callserver.testing.fake_sideband import FakeSideband

Event = dict[str, Any]
MAX_APPEND_TOKENS = 500
APPENDS = ("session.instructions.append", "session.thinking.append", "session.commentary.append")


def estimated_tokens(text: str) -> int:
    """A conservative token count (no tokenizer offline): words or characters / 4."""
    return max(len(text.split()), math.ceil(len(text) / 4))


class Refused(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


async def handle_client_event(
    live: FakeLive, session: FakeLiveSession, sideband: FakeSideband, event: Event
) -> None:
    """Apply one client event; a refusal is an ``error`` event to the sender, recorded."""
    client_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    if live.on_client_event is not None:
        live.on_client_event(session.session_id, event)
    try:
        if not live.auto_reply:  # a replay: the cassette answers, the fake only checks
            _schema_check(event)
            return
        await _apply(live, session, event, client_id)
    except Refused as exc:
        reason = f"{exc.code}: {exc.message}"
        sideband.errors.append((event, [reason]))
        live.client_errors.append((session.session_id, event, [reason]))
        if live.auto_reply:
            await sideband.send(
                le.error(exc.code, exc.message, client_event_id=client_id, param=exc.param)
            )


def _schema_check(event: Event) -> None:
    kind = event.get("type")
    if kind == "session.start":
        raise Refused(
            "invalid_event",
            "session.start is not accepted on a sideband: the session is already running",
        )
    if kind == "session.input_audio.append":
        raise Refused(
            "invalid_event",
            "audio is not accepted on a SIP sideband: the SIP leg carries the media",
        )
    errors = client_event_errors(event)
    if errors:
        code = "unknown_parameter" if "Additional properties" in errors[0] else "invalid_value"
        raise Refused(code, "; ".join(errors)[:2000])


async def _apply(
    live: FakeLive, session: FakeLiveSession, event: Event, client_id: str | None
) -> None:
    _schema_check(event)
    kind = event["type"]
    if kind == "session.update":
        await _session_update(live, session, event, client_id)
    elif kind in APPENDS:
        await _append(live, session, event, client_id)
    elif kind == "response.item.create":
        _require_responses(session, kind)
        _item_create(session, event)
    elif kind == "response.create":
        _require_responses(session, kind)
        await live.continue_backend(session)
    elif kind == "transport.dtmf.send":
        await live.broadcast(session, le.dtmf_sent(event["event"], client_id))
    elif kind == "session.close":
        await live.close_session(session.session_id, "close_requested")
    elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
        state = "muted" if kind.endswith(".mute") else "unmuted"
        ack = {"type": f"session.input_audio.{state}", "event_id": le.new_id("event")}
        if client_id:
            ack["client_event_id"] = client_id
        await live.broadcast(session, ack)
    # decision.* and audio fixtures are valid protocol the fake does not model: accepted.


def _require_responses(session: FakeLiveSession, kind: str) -> None:
    if session.mode != "responses":
        raise Refused("invalid_request_error", f"{kind} requires Responses delegation.")


async def _session_update(
    live: FakeLive, session: FakeLiveSession, event: Event, client_id: str | None
) -> None:
    update = event["session"]
    config = session.config or {}
    if "delegation" in update:
        wanted = (update["delegation"] or {"type": "client"}).get("type", "client")
        if wanted != session.mode:
            raise Refused(
                "immutable_field_update",
                "The delegation type cannot change after session startup.",
                "session.delegation.type",
            )
        current = dict(config.get("delegation") or {"type": "client"})
        for key, value in (update["delegation"] or {}).items():
            if key == "responses" and isinstance(value, dict):
                current["responses"] = {**current.get("responses", {}), **value}
            else:
                current[key] = value
        config["delegation"] = current
    if "triggers" in update:
        config["triggers"] = update["triggers"]
    session.config = config
    session.updates.append(update)
    await live.broadcast(session, le.session_updated(session.resource(), client_id))


async def _append(
    live: FakeLive, session: FakeLiveSession, event: Event, client_id: str | None
) -> None:
    kind = event["type"]
    if estimated_tokens(event["content"]) > MAX_APPEND_TOKENS:
        raise Refused("invalid_value", f"content exceeds {MAX_APPEND_TOKENS} tokens", "content")
    delegation_id = event["delegation_id"]
    if delegation_id is not None:
        if session.mode == "responses":
            raise Refused(
                "invalid_value",
                "delegation_id is not accepted with Responses delegation",
                "delegation_id",
            )
        if delegation_id not in session.client_delegations:
            raise Refused(
                "invalid_value", f"unknown client delegation {delegation_id!r}", "delegation_id"
            )
        session.answered_delegations.add(delegation_id)
    session.appends.append(event)
    await live.broadcast(session, le.appended(kind, session.clock_ms, client_id))


def _item_create(session: FakeLiveSession, event: Event) -> None:
    item = event["item"]
    if item.get("type") != "function_call_output":
        session.backend_input.append(item)
        return
    call_id = item.get("call_id")
    if call_id not in session.calls:
        raise Refused("invalid_value", f"no function call with call_id {call_id!r}", "item.call_id")
    if call_id in session.outputs:
        raise Refused("invalid_value", f"function call {call_id!r} already has an output")
    session.outputs[call_id] = str(item.get("output"))
