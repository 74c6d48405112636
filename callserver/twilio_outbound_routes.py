"""Twilio's requests about calls callserver placed through it (the Twilio dialer).

``/twilio/outbound/answer`` (the call's ``Url``: the callee answered) answers TwiML;
``/twilio/outbound/status`` (the call's ``StatusCallback``) applies call progress. Both are
verified like every Twilio webhook (``X-Twilio-Signature`` over the public URL and the
form) and 404 while the Twilio dialer is not configured. Thin: decisions are in
``outbound/twilio_answer.py``.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callserver.calls.registry import RegistryUnavailable
from callserver.outbound.service import OutboundService
from callserver.outbound.twilio_answer import TwilioOutbound
from callserver.webhooks import twiml
from callserver.webhooks.errors import WebhookError
from callserver.webhooks.twilio import public_base, public_url, read_verified_form

log = logging.getLogger(__name__)

_ATTEMPT_RE = re.compile(r"^out_[A-Za-z0-9]{8,64}$")
_WORD_RE = re.compile(r"^[a-z_\-]{1,32}$")
MAX_BODY_BYTES = 64 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _verified(request: Request) -> tuple[TwilioOutbound, dict[str, str], str]:
    """(Twilio answers, form, attempt id) of a verified request; raises WebhookError."""
    services = request.app.state.services
    service: OutboundService | None = getattr(services, "outbound", None)
    if service is None or service.twilio is None or service.twilio_signature is None:
        raise WebhookError(404, "the Twilio dialer is not configured", reason="not_configured")
    settings = services.settings
    base = public_base(
        request, public_base_url=settings.public_base_url, trust_proxy=settings.trust_proxy
    )
    form = await read_verified_form(
        request,
        service.twilio_signature,
        url=public_url(request, base),
        max_body_bytes=MAX_BODY_BYTES,
    )
    attempt = request.query_params.get("attempt", "")
    if not _ATTEMPT_RE.match(attempt):
        raise WebhookError(400, "attempt is not an outbound call id", reason="bad_attempt")
    return service.twilio, dict(form), attempt


async def _verified_or_refused(
    request: Request, what: str
) -> tuple[TwilioOutbound, dict[str, str], str] | Response:
    try:
        return await _verified(request)
    except WebhookError as exc:
        log.warning(
            "twilio outbound %s refused: %s", what, exc.message, extra={"reason": exc.reason}
        )
        return _error(exc.status, exc.message)


def _word(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text if _WORD_RE.match(text) else None


async def outbound_answer(request: Request) -> Response:
    verified = await _verified_or_refused(request, "answer")
    if isinstance(verified, Response):
        return verified
    answers, form, attempt = verified
    engine = _word(request.query_params.get("engine")) or "realtime"
    answered_by = _word(form.get("AnsweredBy"))
    body = await answers.answer(attempt, engine, answered_by)
    return Response(body, media_type=twiml.TWIML_MEDIA_TYPE)


async def outbound_status(request: Request) -> Response:
    verified = await _verified_or_refused(request, "status")
    if isinstance(verified, Response):
        return verified
    answers, form, attempt = verified
    status = _word(form.get("CallStatus"))
    if status is None:
        return _error(400, "CallStatus is not a call status")
    try:
        outcome = await answers.status(attempt, status)
    except RegistryUnavailable:
        return _error(503, "call registry unavailable")
    return JSONResponse({"status": outcome})
