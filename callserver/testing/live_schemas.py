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
import ipaddress
import re
from typing import Any

from jsonschema import Draft202012Validator
from openai.types.live.connect_client_event_param import ConnectClientEventParam
from openai.types.live.connect_server_event import ConnectServerEvent
from openai.types.live.media_session_config_param import MediaSessionConfigParam
from openai.types.live.session_accept_params import SessionAcceptParams
from openai.types.live.session_refer_params import SessionReferParams
from openai.types.live.session_reject_params import SessionRejectParams
from pydantic import TypeAdapter, ValidationError

from callserver.testing.schemas import describe_error, forbid_extra_keys, walk

__all__ = [
    "accept_errors",
    "client_event_errors",
    "create_errors",
    "refer_errors",
    "reject_errors",
    "server_event_errors",
]

_TYPES: dict[str, Any] = {
    "accept": SessionAcceptParams,
    "reject": SessionRejectParams,
    "refer": SessionReferParams,
    "client_event": ConnectClientEventParam,
    "media_session": MediaSessionConfigParam,
}
WEBRTC_ONLY = ("client", "wake_policy", "idle_timeout_s")
"""MediaSessionConfig fields that exist only for WebRTC sessions: refused on SIP."""
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
TRUNK_URL = re.compile(
    r"^sips:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9\-.]*)(:[0-9]{1,5})?(;transport=tcp)?$"
)
TRANSPORT_KEYS = {"type", "destination", "trunk"}
TRUNK_KEYS = {"provider_url", "auth", "caller_number"}
AUTH_KEYS = {"type", "username", "password"}


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


def create_errors(body: Any) -> list[str]:
    """An outbound create (``POST /v1/live/sessions``, SIP transport), by the digest's rules:
    ``session`` is a MediaSessionConfig (strict; no WebRTC-only fields, no audio format);
    the SDK types only a WebRTC transport, so the SIP transport is checked here."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    errors = [f"{key}: unknown parameter" for key in body if key not in ("session", "transport")]
    session = body.get("session")
    if not isinstance(session, dict):
        errors.append("session: required")
    else:
        errors += [f"session/{e}" for e in _errors("media_session", session)]
        errors += [f"session/{k}: only for WebRTC sessions" for k in WEBRTC_ONLY if k in session]
        audio = session.get("audio")
        if isinstance(audio, dict) and "format" in audio:
            errors.append("session/audio/format: SIP negotiates the media format; omit it")
    return errors + _sip_transport_errors(body.get("transport"))


def _sip_transport_errors(transport: Any) -> list[str]:
    if not isinstance(transport, dict):
        return ["transport: required"]
    errors = [f"transport/{k}: unknown parameter" for k in transport if k not in TRANSPORT_KEYS]
    if transport.get("type") != "sip":
        errors.append("transport/type: must be 'sip' for an outbound call")
    destination = transport.get("destination")
    if not isinstance(destination, str) or not E164.match(destination):
        errors.append("transport/destination: an E.164 number only (SIP URIs are not supported)")
    trunk = transport.get("trunk")
    if not isinstance(trunk, dict):
        return [*errors, "transport/trunk: required"]
    errors += [f"transport/trunk/{k}: unknown parameter" for k in trunk if k not in TRUNK_KEYS]
    errors += _trunk_url_errors(trunk.get("provider_url"))
    caller = trunk.get("caller_number")
    if not isinstance(caller, str) or not E164.match(caller):
        errors.append("transport/trunk/caller_number: must be an E.164 number")
    auth = trunk.get("auth")
    if not isinstance(auth, dict):
        return [*errors, "transport/trunk/auth: required"]
    errors += [f"transport/trunk/auth/{k}: unknown parameter" for k in auth if k not in AUTH_KEYS]
    if auth.get("type") != "digest":
        errors.append("transport/trunk/auth/type: must be 'digest'")
    username, password = auth.get("username"), auth.get("password")
    if (
        not isinstance(username, str)
        or not username.strip()
        or any(c.isspace() or c == "\x00" for c in username)
        or len(username.encode()) > 256
    ):
        errors.append("transport/trunk/auth/username: 1-256 bytes, no whitespace, CR, LF, NUL")
    if (
        not isinstance(password, str)
        or len(password.encode()) > 4096
        or any(c in "\r\n\x00" for c in password)
    ):
        errors.append("transport/trunk/auth/password: at most 4096 bytes, no CR, LF, NUL")
    return errors


def _trunk_url_errors(url: Any) -> list[str]:
    where = "transport/trunk/provider_url"
    if not isinstance(url, str) or not TRUNK_URL.match(url):
        return [f"{where}: must be sips:host[:port][;transport=tcp] (TLS, no user part)"]
    host = url[len("sips:") :].split(";", 1)[0]
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or "." not in host or host.endswith((".local", ".localhost")):
            return [f"{where}: local host names are refused"]
        return []
    if not address.is_global or address.is_multicast:
        return [f"{where}: private, loopback, link-local and multicast addresses are refused"]
    return []
