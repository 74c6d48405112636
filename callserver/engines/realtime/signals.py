"""Realtime server events -> engine-neutral :class:`Signal` values (one table, no state)."""

from __future__ import annotations

from typing import Any

from callserver.engines.signals import CALLER_ACTIVITY, Signal

DTMF_EVENT = "input_audio_buffer.dtmf_event_received"
_NONE: tuple[Signal, ...] = ()
_TOKEN_KEYS = ("input_tokens", "output_tokens", "total_tokens")


def realtime_signals(message: dict[str, Any]) -> tuple[Signal, ...]:
    """What one raw Realtime server event means for the call."""
    kind = message.get("type")
    if kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
        return (CALLER_ACTIVITY,)
    if kind == DTMF_EVENT:
        key = message.get("event")
        return (Signal("dtmf", text=key if isinstance(key, str) else repr(key)),)
    if kind == "conversation.item.input_audio_transcription.completed":
        return (Signal("caller_said", text=_text(message.get("transcript")), ref=_id(message)),)
    if kind == "response.output_audio_transcript.done":
        return (Signal("agent_said", text=_text(message.get("transcript")), ref=_id(message)),)
    if kind == "response.created":
        return (Signal("agent_started", ref=_response_id(message)),)
    if kind == "response.done":
        usage = (message.get("response") or {}).get("usage") or {}
        tokens = {k: usage[k] for k in _TOKEN_KEYS if isinstance(usage.get(k), int)}
        done = Signal("agent_done", ref=_response_id(message))
        return (Signal("usage", usage=tokens), done) if tokens else (done,)
    if kind == "error":
        code = (message.get("error") or {}).get("code")
        return (Signal("error", text=str(code) if code else None),)
    return _NONE


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _id(message: dict[str, Any]) -> str | None:
    item_id = message.get("item_id")
    return item_id if isinstance(item_id, str) else None


def _response_id(message: dict[str, Any]) -> str | None:
    response_id = (message.get("response") or {}).get("id")
    return response_id if isinstance(response_id, str) else None
