"""Strict validation of GPT-Live messages against the installed ``openai`` package's types.

The package's ``types/live`` (generated from OpenAI's spec) is the authority for GPT-Live;
there is no published JSON Schema file for it. Its request types are TypedDicts: pydantic
turns each into a JSON Schema, every object that lists properties is closed (so an unknown
key such as a Realtime ``turn_detection`` is refused, as the Live API refuses it), and
``jsonschema`` reports errors by path, like ``schemas.py`` does for Realtime.

Server events are pydantic models there; :func:`server_event_errors` checks that what the
fake sends parses as the ``ConnectServerEvent`` a real client would receive.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator
from openai.types.live.connect_client_event_param import ConnectClientEventParam
from openai.types.live.connect_server_event import ConnectServerEvent
from openai.types.live.session_accept_params import SessionAcceptParams
from openai.types.live.session_refer_params import SessionReferParams
from openai.types.live.session_reject_params import SessionRejectParams
from pydantic import TypeAdapter, ValidationError

from callserver.testing.schemas import describe_error, forbid_extra_keys, walk

__all__ = [
    "accept_errors",
    "client_event_errors",
    "refer_errors",
    "reject_errors",
    "server_event_errors",
]

_TYPES: dict[str, Any] = {
    "accept": SessionAcceptParams,
    "reject": SessionRejectParams,
    "refer": SessionReferParams,
    "client_event": ConnectClientEventParam,
}


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = TypeAdapter(_TYPES[name]).json_schema()
    return Draft202012Validator(walk(schema, forbid_extra_keys))


def _errors(name: str, message: Any) -> list[str]:
    return [describe_error(err) for err in _validator(name).iter_errors(message)]


def accept_errors(body: Any) -> list[str]:
    """The accept body, plus what the types cannot say: ``audio.format`` is refused on SIP."""
    errors = _errors("accept", body)
    audio = (body.get("session") or {}).get("audio") if isinstance(body, dict) else None
    if isinstance(audio, dict) and "format" in audio:
        errors.append("session/audio/format: SIP negotiates the media format; omit it")
    return errors


def reject_errors(body: Any) -> list[str]:
    errors = _errors("reject", body)
    code = body.get("status_code") if isinstance(body, dict) else None
    if isinstance(code, int) and not 300 <= code <= 699:
        errors.append(f"status_code: {code} is not a SIP status in 300..699")
    return errors


def refer_errors(body: Any) -> list[str]:
    errors = _errors("refer", body)
    target = body.get("target_uri") if isinstance(body, dict) else None
    if isinstance(target, str) and not target.strip():
        errors.append("target_uri: must not be blank")
    return errors


def client_event_errors(event: Any) -> list[str]:
    """One sideband client event against the ``ConnectClientEvent`` union, strictly."""
    return _errors("client_event", event)


@functools.cache
def _server_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(ConnectServerEvent)


def server_event_errors(event: Any) -> list[str]:
    """Whether ``event`` parses as the server event the ``openai`` package would receive."""
    try:
        _server_adapter().validate_python(event)
    except ValidationError as exc:
        return [f"{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]]
    return []
