"""HTTP endpoints for a Twilio phone number: ``/twilio/voice``, ``/twilio/status``,
``/twilio/dial-action``. Thin: parse and verify (``webhooks/twilio.py``), decide
(``calls/twilio_calls.py``), answer TwiML (``webhooks/twiml.py``).

Point the number's "A call comes in" webhook at ``/twilio/voice`` (and optionally its status
callback at ``/twilio/status``); the TwiML we answer wires the rest.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.registry import RegistryUnavailable
from callserver.calls.registry_factory import admission_cap
from callserver.calls.twilio_calls import TwilioCalls, dial_refusal
from callserver.graph.context import CallInfo
from callserver.settings import Settings
from callserver.webhooks import twiml
from callserver.webhooks.errors import WebhookError
from callserver.webhooks.openai import uri_user
from callserver.webhooks.twilio import (
    DialAction,
    Form,
    StatusCallback,
    TwilioSignature,
    VoiceRequest,
    public_base,
    public_url,
    read_verified_form,
)

if TYPE_CHECKING:
    from callserver.app import Services

log = logging.getLogger(__name__)

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
DIAL_ACTION_PATH = "/twilio/dial-action"


@dataclasses.dataclass(slots=True)
class TwilioService:
    """Everything the Twilio endpoints need, built once in the lifespan."""

    calls: TwilioCalls
    signature: TwilioSignature
    sip_uri: str
    public_base_url: str | None
    trust_proxy: bool
    max_body_bytes: int
    reject_say: str | None = None
    """Spoken before hanging up on a refused call; None plays busy/rejected instead."""


def build_twilio(
    settings: Settings, manager: CallManager, config: ConfigSource
) -> TwilioService | None:
    """The Twilio integration, or None when ``TWILIO_AUTH_TOKEN`` is unset (endpoints 404).

    Refuses to start on a token without a SIP target: answering every call with a broken
    ``<Dial>`` is worse than not starting.
    """
    if settings.twilio_auth_token is None or not settings.twilio_auth_token.get_secret_value():
        return None
    sip_uri = settings.sip_uri or (
        twiml.default_sip_uri(settings.openai_project_id) if settings.openai_project_id else None
    )
    if not sip_uri:
        raise RuntimeError(
            "TWILIO_AUTH_TOKEN is set but Twilio has nothing to dial: set OPENAI_PROJECT_ID "
            "(or CALLSERVER_SIP_URI)."
        )
    if not sip_uri.startswith(("sip:", "sips:")) or len(sip_uri) > twiml.MAX_SIP_URI_CHARS:
        raise RuntimeError("CALLSERVER_SIP_URI must be a sip: or sips: URI under 1024 characters")
    calls = TwilioCalls(manager=manager, config=config, max_calls=admission_cap(settings))
    calls.install()
    return TwilioService(
        calls=calls,
        signature=TwilioSignature(
            settings.twilio_auth_token.get_secret_value(),
            {key: secret.get_secret_value() for key, secret in settings.twilio_shared_keys.items()},
        ),
        sip_uri=sip_uri,
        public_base_url=settings.public_base_url,
        trust_proxy=settings.trust_proxy,
        max_body_bytes=settings.max_webhook_body_bytes,
        reject_say=settings.twilio_reject_say,
    )


def _twilio(request: Request) -> TwilioService | None:
    services: Services = request.app.state.services
    return getattr(services, "twilio", None)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_NOT_CONFIGURED = "Twilio is not configured on this server (set TWILIO_AUTH_TOKEN)"


def _xml(body: str) -> Response:
    return Response(body, media_type=twiml.TWIML_MEDIA_TYPE)


async def _verified(request: Request, service: TwilioService) -> tuple[str, Form]:
    """(public base URL, verified form) of a Twilio request; raises WebhookError."""
    base = public_base(
        request, public_base_url=service.public_base_url, trust_proxy=service.trust_proxy
    )
    form = await read_verified_form(
        request,
        service.signature,
        url=public_url(request, base),
        max_body_bytes=service.max_body_bytes,
    )
    return base, form


def _refused(exc: WebhookError, path: str) -> JSONResponse:
    log.warning(
        "twilio webhook refused: %s", exc.message, extra={"reason": exc.reason, "path": path}
    )
    return _error(exc.status, exc.message)


async def twilio_voice(request: Request) -> Response:
    """A call to the Twilio number: TwiML that dials OpenAI, or a refusal with no SIP leg."""
    service = _twilio(request)
    if service is None:
        return _error(404, _NOT_CONFIGURED)
    try:
        base, form = await _verified(request, service)
        voice = VoiceRequest.from_form(form)
    except WebhookError as exc:
        return _refused(exc, VOICE_PATH)
    dialed = uri_user(voice.to) or voice.to
    info = CallInfo(
        call_id=voice.call_sid, caller=uri_user(voice.from_) or voice.from_, dialed=dialed
    )
    try:
        admission = await service.calls.admit(info)
    except RegistryUnavailable:
        # Cannot count live calls: refuse before any SIP leg, as the OpenAI path would.
        log.error("twilio call refused: call registry unavailable")
        return _xml(twiml.reject("busy", say=service.reject_say))
    route_name = admission.route.route_name if admission.route else None
    if admission.reject is not None or admission.route is None or admission.route.graph is None:
        log.info(
            "twilio call refused before dialing: %s",
            admission.reason,
            extra={"call_sid": voice.call_sid, "route": route_name},
        )
        return _xml(twiml.reject(admission.reject or "busy", say=service.reject_say))
    headers = service.calls.sip_headers(admission.route, voice.call_sid, dialed)
    sip_uri = twiml.sip_uri_with_headers(service.sip_uri, headers)
    log.info(
        "twilio call dialing OpenAI",
        extra={
            "call_sid": voice.call_sid,
            "route": route_name,
            "graph": admission.route.graph.name,
        },
    )
    return _xml(
        twiml.dial_sip(sip_uri, action_url=base + DIAL_ACTION_PATH, status_url=base + STATUS_PATH)
    )


async def twilio_status(request: Request) -> Response:
    """Call progress from Twilio: terminal statuses end the call, others are recorded."""
    service = _twilio(request)
    if service is None:
        return _error(404, _NOT_CONFIGURED)
    try:
        _, form = await _verified(request, service)
        status = StatusCallback.from_form(form)
    except WebhookError as exc:
        return _refused(exc, STATUS_PATH)
    try:
        outcome = await service.calls.on_status(status.sids, status.status)
    except RegistryUnavailable:
        return _error(503, "call registry unavailable")
    return JSONResponse({"status": outcome})


async def twilio_dial_action(request: Request) -> Response:
    """The ``<Dial>`` is over: end our side; then hang up the caller's leg, or, when the
    agent leg never connected (OpenAI refused it), answer the same refusal as a call
    refused at the voice webhook (``CALLSERVER_TWILIO_REJECT_SAY``, else busy)."""
    service = _twilio(request)
    if service is None:
        return _error(404, _NOT_CONFIGURED)
    try:
        _, form = await _verified(request, service)
        action = DialAction.from_form(form)
    except WebhookError as exc:
        return _refused(exc, DIAL_ACTION_PATH)
    outcome: str | None = None
    try:
        outcome = await service.calls.on_status(action.sids, action.dial_status, final=True)
    except RegistryUnavailable:
        log.error(
            "twilio dial action: call registry unavailable", extra={"call_sid": action.call_sid}
        )
    refusal = dial_refusal(action.dial_status, action.sip_response_code, outcome)
    if refusal is not None:
        log.info(
            "twilio call refused at the SIP leg: %s",
            action.dial_status,
            extra={"call_sid": action.call_sid, "sip_code": action.sip_response_code},
        )
        return _xml(twiml.reject(refusal, say=service.reject_say))
    return _xml(twiml.hangup())  # the caller's leg ends either way
