"""OpenAI's incoming-call webhooks, parsed into one typed :class:`IncomingCall`.

Three event types announce a ringing SIP call: ``realtime.call.incoming`` (Realtime API,
``data.call_id``), ``live.transport.incoming`` (GPT-Live, ``data.session_id``, ``data.type:
"sip"``) and its deprecated twin ``live.call.incoming`` (no ``data.type``). One pending call
may fire a Realtime and a Live event with *different* ids (never derive one from the other);
which of them is acted on is the call manager's decision (the graph's engine), not ours.

Verification happens before this module sees the body (see ``signature.py``). Parsing is
tolerant of keys OpenAI may add later and strict about the ones we rely on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from callserver.graph.context import CallInfo
from callserver.webhooks.errors import WebhookError

CALL_INCOMING = "realtime.call.incoming"
LIVE_TRANSPORT_INCOMING = "live.transport.incoming"
LIVE_CALL_INCOMING = "live.call.incoming"
"""Deprecated name of ``live.transport.incoming``; existing subscriptions still get it."""
INCOMING_EVENTS: dict[str, tuple[str, str]] = {
    CALL_INCOMING: ("realtime", "call_id"),
    LIVE_TRANSPORT_INCOMING: ("live", "session_id"),
    LIVE_CALL_INCOMING: ("live", "session_id"),
}
"""Incoming-call event type -> (engine, the data key holding the id accept/reject take)."""
SUBSCRIBE_EVENTS: dict[str, str] = {"realtime": CALL_INCOMING, "live": LIVE_TRANSPORT_INCOMING}
"""Engine -> the webhook event an operator subscribes to for graphs on it."""
_MAX_HEADERS = 200
_UNRECORDED_HEADERS = frozenset({"webhook-signature", "svix-signature", "authorization", "cookie"})
_CALL_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_URI_USER_RE = re.compile(r"^(?:\"[^\"]*\"\s*|[^<]*)?<?(?:sips?|tel):([^@;>]+)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEvent:
    """Any verified event: enough to decide whether we handle it."""

    event_id: str
    type: str
    data: dict[str, Any]
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingCall:
    """One incoming-call event, on either engine. Header values are untrusted caller input."""

    call_id: str
    """The id the event's API takes for accept/reject: Realtime ``call_id`` (``rtc_...``) or
    Live ``session_id`` (``live_...``); opaque, used unchanged."""
    event_id: str
    webhook_id: str
    from_uri: str | None
    to_uri: str | None
    caller: str | None
    dialed: str | None
    sip_call_id: str | None
    twilio_call_sid: str | None
    sip_headers: tuple[tuple[str, str], ...]
    payload: dict[str, Any] | None = None
    """The verified webhook body, kept for call recording."""
    delivery_headers: tuple[tuple[str, str], ...] = ()
    """The webhook's HTTP headers minus its signature, kept for call recording."""
    engine: str = "realtime"
    """The API that sent the event: ``realtime`` or ``live``."""
    event_type: str = CALL_INCOMING
    sip_media_security: str | None = None
    """Live only: SDP-negotiated media protection (``srtp``, ``rtp``, or a newer value)."""

    @property
    def claim_key(self) -> str:
        """The id claimed once per call. Live ids get their own namespace so that a Live id
        equal to a Realtime one (an older spec said they were) cannot shadow the other."""
        return self.call_id if self.engine == "realtime" else f"{self.engine}:{self.call_id}"

    def info(self) -> CallInfo:
        """The subset the agent graph may see (routing, placeholders)."""
        return CallInfo(
            call_id=self.call_id,
            caller=self.caller,
            dialed=self.dialed,
            sip_headers=self.sip_headers,
        )


def parse_event(body: bytes) -> WebhookEvent:
    """Parse the JSON envelope every OpenAI webhook shares; 400 on anything else."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError(400, "body is not valid JSON", reason="bad_json") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "body must be a JSON object", reason="bad_shape")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookError(400, "'type' must be a non-empty string", reason="bad_shape")
    event_id = payload.get("id")
    if not isinstance(event_id, str):
        raise WebhookError(400, "'id' must be a string", reason="bad_shape")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookError(400, "'data' must be an object", reason="bad_shape")
    return WebhookEvent(event_id=event_id, type=event_type, data=data, payload=payload)


def uri_user(uri: str | None) -> str | None:
    """User part of a SIP/tel URI or name-addr: ``"Bob" <sip:+1425@host>`` -> ``+1425``."""
    if not uri:
        return None
    match = _URI_USER_RE.match(uri.strip())
    return match.group(1) if match else None


def parse_incoming_call(
    event: WebhookEvent,
    webhook_id: str,
    delivery_headers: tuple[tuple[str, str], ...] = (),
) -> IncomingCall:
    """Build an :class:`IncomingCall` from a verified incoming-call event (any engine)."""
    engine, id_key = INCOMING_EVENTS[event.type]
    call_id = event.data.get(id_key)
    if not isinstance(call_id, str) or not _CALL_ID_RE.match(call_id):
        what = id_key.replace("_id", "")
        raise WebhookError(400, f"data.{id_key} must be a {what} id string", reason="bad_shape")
    media_security = None
    if engine == "live":
        transport = event.data.get("type")
        if event.type == LIVE_TRANSPORT_INCOMING and transport != "sip":
            raise WebhookError(400, f"data.type must be 'sip' for {event.type}", reason="bad_shape")
        if event.type == LIVE_CALL_INCOMING and transport not in (None, "sip"):
            raise WebhookError(400, "data.type, when present, must be 'sip'", reason="bad_shape")
        media_security = event.data.get("sip_media_security")
        if media_security is not None and not isinstance(media_security, str):
            raise WebhookError(400, "data.sip_media_security must be a string", reason="bad_shape")
    if engine == "live" and "sip_headers" not in event.data:
        raise WebhookError(400, "data.sip_headers is required", reason="bad_shape")
    raw_headers = event.data.get("sip_headers", [])
    if not isinstance(raw_headers, list):
        raise WebhookError(400, "data.sip_headers must be a list", reason="bad_shape")
    if len(raw_headers) > _MAX_HEADERS:
        raise WebhookError(400, f"more than {_MAX_HEADERS} SIP headers", reason="bad_shape")
    headers: list[tuple[str, str]] = []
    for index, item in enumerate(raw_headers):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise WebhookError(
                400,
                f"data.sip_headers[{index}] must be an object with string name and value",
                reason="bad_shape",
            )
        headers.append((item["name"], item["value"]))

    def first(name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in headers if k.lower() == lname), None)

    from_uri, to_uri = first("From"), first("To")
    return IncomingCall(
        call_id=call_id,
        event_id=event.event_id,
        webhook_id=webhook_id,
        from_uri=from_uri,
        to_uri=to_uri,
        caller=uri_user(from_uri),
        dialed=uri_user(to_uri),
        sip_call_id=first("Call-ID"),
        twilio_call_sid=first("X-Twilio-CallSid"),
        sip_headers=tuple(headers),
        payload=event.payload,
        delivery_headers=tuple(
            (k, v) for k, v in delivery_headers if k.lower() not in _UNRECORDED_HEADERS
        ),
        engine=engine,
        event_type=event.type,
        sip_media_security=media_security[:32] if media_security else None,
    )
