"""Builders for GA-format realtime server events, as the OpenAI service sends them.

Tests script a call by sending these through ``FakeConnection.send``. Each builder returns
plain dicts (what goes on the wire) with a fresh ``event_id``, and every one validates with
``schemas.server_event_errors``, so a test never feeds callserver a shape the live service
could not produce.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

__all__ = [
    "assistant_turn",
    "conversation_item_added",
    "conversation_item_done",
    "dtmf",
    "error",
    "function_call_turn",
    "input_transcription_completed",
    "new_id",
    "response_created",
    "response_done",
    "session_created",
    "session_object",
    "session_updated",
    "speech_started",
    "speech_stopped",
    "usage",
]

Event = dict[str, Any]
ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete", "in_progress"]

DEFAULT_MODEL = "gpt-realtime"


def new_id(prefix: str) -> str:
    """An id shaped like the service's (``event_<hex>``, ``item_<hex>``, ``resp_<hex>``...)."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _event(type_: str, **fields: Any) -> Event:
    return {"event_id": new_id("event"), "type": type_, **fields}


def session_object(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``realtime.session`` resource: service defaults overlaid with ``config``.

    ``config`` is typically the accept body merged with later ``session.update``s, so
    ``session.created`` tells the client what it asked for, like the live service does.
    """
    session: dict[str, Any] = {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": DEFAULT_MODEL,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy", "speed": 1.0},
        },
    }
    return deep_merge(session, config or {})


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; nested dicts merge, everything else replaces.

    That is how ``session.update`` behaves: a partial ``audio.output`` keeps ``audio.input``.
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def session_created(session: dict[str, Any] | None = None) -> Event:
    """``session.created``; ``session`` is a config overlaid on service defaults."""
    return _event("session.created", session=session_object(session))


def session_updated(session: dict[str, Any] | None = None) -> Event:
    """``session.updated``; pass the full effective session (see ``session_object``)."""
    return _event("session.updated", session=session_object(session))


def speech_started(item_id: str | None = None, audio_start_ms: int = 0) -> Event:
    """``input_audio_buffer.speech_started``: the caller started talking (barge-in)."""
    return _event(
        "input_audio_buffer.speech_started",
        item_id=item_id or new_id("item"),
        audio_start_ms=audio_start_ms,
    )


def speech_stopped(item_id: str | None = None, audio_end_ms: int = 1000) -> Event:
    """``input_audio_buffer.speech_stopped``: the caller stopped talking."""
    return _event(
        "input_audio_buffer.speech_stopped",
        item_id=item_id or new_id("item"),
        audio_end_ms=audio_end_ms,
    )


def input_transcription_completed(
    item_id: str | None, transcript: str, *, content_index: int = 0
) -> Event:
    """What the caller said, as transcribed by the input transcription model.

    ``item_id`` None makes a fresh id: the real service always names the item.
    """
    return _event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id or new_id("item"),
        content_index=content_index,
        transcript=transcript,
        usage={"type": "duration", "seconds": 1.0},
    )


def usage(input_tokens: int = 10, output_tokens: int = 5) -> dict[str, Any]:
    """A plausible ``response.usage`` block (the SDK reports it as usage events)."""
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "cached_tokens": 0,
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }


def _response(
    response_id: str,
    status: ResponseStatus,
    output: list[dict[str, Any]],
    *,
    status_details: dict[str, Any] | None = None,
    with_usage: bool = True,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_fake",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"}},
        "usage": usage() if with_usage else None,
        "metadata": None,
    }


def response_created(response_id: str | None = None) -> Event:
    """``response.created``: a response is in progress (the SDK tracks this for cancel)."""
    return _event(
        "response.created",
        response=_response(response_id or new_id("resp"), "in_progress", [], with_usage=False),
    )


def response_done(
    response_id: str | None = None,
    *,
    status: ResponseStatus = "completed",
    output: list[dict[str, Any]] | None = None,
    reason: str | None = None,
) -> Event:
    """``response.done``; ``reason`` fills ``status_details`` (e.g. ``client_cancelled``)."""
    details: dict[str, Any] | None = None
    if status != "completed" or reason is not None:
        details = {"type": status if status != "in_progress" else "incomplete"}
        if reason is not None:
            details["reason"] = reason
    return _event(
        "response.done",
        response=_response(
            response_id or new_id("resp"), status, output or [], status_details=details
        ),
    )


def conversation_item_added(item: dict[str, Any], previous_item_id: str | None = None) -> Event:
    """``conversation.item.added``: an item joined the conversation."""
    return _event("conversation.item.added", previous_item_id=previous_item_id, item=item)


def conversation_item_done(item: dict[str, Any], previous_item_id: str | None = None) -> Event:
    """``conversation.item.done``: an item is final."""
    return _event("conversation.item.done", previous_item_id=previous_item_id, item=item)


def function_call_turn(
    name: str,
    arguments: dict[str, Any] | str,
    call_id: str | None = None,
    response_id: str | None = None,
) -> list[Event]:
    """The events of one model turn that calls a tool, in the order the service sends them.

    callserver must run the tool after ``response.function_call_arguments.done`` and answer
    with a ``function_call_output`` item and then ``response.create``.
    """
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    response_id = response_id or new_id("resp")
    call_id = call_id or new_id("call")
    item_id = new_id("item")
    ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
    base_item = {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "call_id": call_id,
        "name": name,
    }
    done_item = {**base_item, "status": "completed", "arguments": args}
    return [
        response_created(response_id),
        _event(
            "response.output_item.added",
            response_id=response_id,
            output_index=0,
            item={**base_item, "status": "in_progress", "arguments": ""},
        ),
        conversation_item_added({**base_item, "status": "in_progress", "arguments": ""}),
        _event("response.function_call_arguments.delta", **ids, delta=args),
        _event("response.function_call_arguments.done", **ids, name=name, arguments=args),
        conversation_item_done(done_item),
        _event(
            "response.output_item.done", response_id=response_id, output_index=0, item=done_item
        ),
        response_done(response_id, output=[done_item]),
    ]


def assistant_turn(text: str, response_id: str | None = None) -> list[Event]:
    """The events of one spoken assistant reply (transcript only: SIP audio bypasses us)."""
    response_id = response_id or new_id("resp")
    item_id = new_id("item")
    ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    base_item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant"}
    started_item = {
        **base_item,
        "status": "in_progress",
        "content": [{"type": "output_audio", "transcript": ""}],
    }
    done_item = {
        **base_item,
        "status": "completed",
        "content": [{"type": "output_audio", "transcript": text}],
    }
    words = text.split(" ")
    deltas = [w if i == 0 else f" {w}" for i, w in enumerate(words)] if text else []
    return [
        response_created(response_id),
        _event(
            "response.output_item.added", response_id=response_id, output_index=0, item=started_item
        ),
        conversation_item_added(started_item),
        *(_event("response.output_audio_transcript.delta", **ids, delta=d) for d in deltas),
        _event("response.output_audio.done", **ids),
        _event("response.output_audio_transcript.done", **ids, transcript=text),
        conversation_item_done(done_item),
        _event(
            "response.output_item.done", response_id=response_id, output_index=0, item=done_item
        ),
        response_done(response_id, output=[done_item]),
    ]


def error(
    code: str | None,
    message: str,
    type: str = "invalid_request_error",
    *,
    param: str | None = None,
    event_id: str | None = None,
) -> Event:
    """``error``: most leave the session open (e.g. ``conversation_already_has_active_response``).

    ``event_id`` is the id of the client event that caused the error, if any.
    """
    return _event(
        "error",
        error={
            "type": type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    )


def dtmf(digit: str, received_at: int | None = None) -> Event:
    """``input_audio_buffer.dtmf_event_received``: a keypad press; it has no ``event_id``."""
    return {
        "type": "input_audio_buffer.dtmf_event_received",
        "event": digit,
        "received_at": int(time.time()) if received_at is None else received_at,
    }
