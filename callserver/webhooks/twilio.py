"""Twilio's form webhooks (voice, call status, Dial action) turned into typed values.

Twilio signs what *it* requested: the full public URL plus every form field
(``X-Twilio-Signature``). Behind a proxy the URL we see differs from that one, so the URL is
rebuilt from the configured public base URL, or from ``X-Forwarded-Proto``/``-Host`` when (and
only when) the operator says a trusted proxy sets them; otherwise a client could pick the URL
the signature is checked against. The HMAC itself is the ``twilio`` package's
``RequestValidator``; this module adds precise refusals (403 signature, 400 fields, 413 size).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from callserver.webhooks.body import read_capped_body
from callserver.webhooks.errors import WebhookError

try:  # newer twilio releases name the algorithm of SharedKey-signed webhooks in a header
    from twilio.request_validator import get_signature_algorithm
except ImportError:  # pragma: no cover - older twilio 9.x: always HMAC-SHA1

    def get_signature_algorithm(signature_settings_header: str | None) -> str:
        return "HMAC_SHA1"


SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
"""A call in one of these is over: the caller is gone (protocol.md section 6)."""

_SID_RE = re.compile(r"^[A-Za-z]{2}[A-Za-z0-9]{1,62}$")
_STATUS_RE = re.compile(r"^[a-z][a-z\-]{0,31}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")

Form = ImmutableMultiDict[str, str]


# ---- the URL Twilio signed ---------------------------------------------------------------


def public_base(request: Request, *, public_base_url: str | None, trust_proxy: bool) -> str:
    """``scheme://host[/prefix]`` of this app as Twilio reaches it.

    Precedence: the configured public base URL (it may carry a path prefix the proxy strips),
    then the forwarded headers of a trusted proxy, then what this socket received.
    """
    if public_base_url:
        return public_base_url.rstrip("/")
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    if trust_proxy:
        proto = _first(request.headers.get("x-forwarded-proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = _first(request.headers.get("x-forwarded-host"))
        if forwarded_host:
            host = forwarded_host
    if not _HOST_RE.match(host):
        raise WebhookError(400, "invalid Host header", reason="bad_host")
    return f"{scheme}://{host}"


def public_url(request: Request, base: str) -> str:
    """The full URL Twilio requested: public base + the raw path and query we received."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.url.query
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _first(value: str | None) -> str:
    """First entry of a comma-separated forwarded header (the client-facing hop)."""
    return (value or "").split(",", 1)[0].strip()


# ---- reading and verifying ---------------------------------------------------------------


class TwilioSignature:
    """Checks ``X-Twilio-Signature`` with the account auth token, or with the SharedKey the
    request's Webhook Setting names.

    Twilio signs with the auth token (HMAC-SHA1) unless a Webhook Rule applies a Setting
    that signs with a SharedKey; then ``X-Twilio-Webhooks-Signature-Settings`` carries
    ``key=<id>,algorithm=<HMAC_SHA1|HMAC_SHA256>``. The named key's secret (from
    ``TWILIO_SHARED_KEYS``) is tried first, then the auth token with the named algorithm.
    """

    def __init__(self, auth_token: str, shared_keys: Mapping[str, str] | None = None) -> None:
        if not auth_token:
            raise ValueError("Twilio auth token is empty")
        self._validator = RequestValidator(auth_token)
        self._shared = {key: RequestValidator(s) for key, s in (shared_keys or {}).items()}

    def check(self, url: str, form: Form, signature: str | None, settings: str | None) -> None:
        """Raise 403 unless ``signature`` signs ``url`` + ``form``. Never echoes either."""
        if not signature:
            raise WebhookError(403, "missing X-Twilio-Signature header", reason="missing_signature")
        algorithm = get_signature_algorithm(settings)
        if algorithm.upper() not in SUPPORTED_ALGORITHMS:
            raise WebhookError(
                403,
                f"{SIGNATURE_SETTINGS_HEADER} names signature algorithm "
                f"{_shown(algorithm)!r}, which this server does not support "
                f"({', '.join(SUPPORTED_ALGORITHMS)})",
                reason="unsupported_algorithm",
            )
        key_id = _shared_key_id(settings)
        validators = [self._shared[key_id]] if key_id in self._shared else []
        validators.append(self._validator)
        if any(v.validate(url, form, signature, algorithm=algorithm) for v in validators):
            return
        if key_id is not None and key_id not in self._shared:
            raise WebhookError(
                403,
                f"signed with Twilio SharedKey {_shown(key_id)!r}, which is not configured: "
                "add <key id>=<secret> to TWILIO_SHARED_KEYS",
                reason="unknown_shared_key",
            )
        raise WebhookError(
            403, "X-Twilio-Signature does not match this request", reason="bad_signature"
        )


SUPPORTED_ALGORITHMS = ("HMAC_SHA1", "HMAC_SHA256")
_SHOWN_RE = re.compile(r"[^A-Za-z0-9_\-]")


def _shared_key_id(settings: str | None) -> str | None:
    """The ``key=`` of a signature-settings header (None: signed with the auth token)."""
    for part in (settings or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "key" and value.strip():
            return value.strip()
    return None


def _shown(value: str) -> str:
    """A header value safe to put in an error body: short, plain characters only."""
    return _SHOWN_RE.sub("?", value[:80])


async def read_verified_form(
    request: Request, signature: TwilioSignature, *, url: str, max_body_bytes: int
) -> Form:
    """The form fields of a Twilio webhook whose signature matches ``url``; else raise.

    A POST carries them in the body; a GET (a number whose webhook is set to HTTP GET) in
    the query string, which ``url`` already includes: Twilio then signs the URL alone.
    Order matters: size first (cheap), then the signature, so an unsigned request learns
    nothing about which fields we expect.
    """
    signed: Form
    if request.method == "GET":
        if len(request.url.query) > max_body_bytes:
            raise WebhookError(413, "query string too large", reason="too_large")
        form = _parse_form(request.url.query.encode("latin-1"), "query string")
        signed = ImmutableMultiDict()
    else:
        body = await read_capped_body(request, max_body_bytes)
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise WebhookError(415, f"expected {FORM_CONTENT_TYPE}", reason="bad_content_type")
        form = signed = _parse_form(body, "body")
    signature.check(
        url,
        signed,
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(SIGNATURE_SETTINGS_HEADER),
    )
    return form


def _parse_form(raw: bytes, where: str) -> Form:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise WebhookError(400, f"{where} is not a UTF-8 form", reason="bad_form") from None
    return ImmutableMultiDict(pairs)


# ---- typed requests ----------------------------------------------------------------------


def _required(form: Form, *names: str) -> None:
    missing = [name for name in names if not form.get(name)]
    if missing:
        raise WebhookError(
            400, f"missing form field(s): {', '.join(missing)}", reason="missing_fields"
        )


def _sid(form: Form, name: str) -> str | None:
    value = form.get(name) or None
    if value is not None and not _SID_RE.match(value):
        raise WebhookError(400, f"{name} is not a Twilio SID", reason="bad_sid")
    return value


def _status(form: Form, name: str) -> str:
    value = (form.get(name) or "").strip().lower()
    if not _STATUS_RE.match(value):
        raise WebhookError(400, f"{name} is not a call status", reason="bad_status")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class VoiceRequest:
    """Twilio asks what to do with a new call. Numbers are caller-controlled input."""

    call_sid: str
    from_: str
    to: str
    account_sid: str | None

    @classmethod
    def from_form(cls, form: Form) -> VoiceRequest:
        _required(form, "CallSid", "To")
        if "From" not in form:
            raise WebhookError(400, "missing form field(s): From", reason="missing_fields")
        call_sid = _sid(form, "CallSid")
        assert call_sid is not None
        return cls(
            call_sid=call_sid,
            from_=form["From"],
            to=form["To"],
            account_sid=_sid(form, "AccountSid"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StatusCallback:
    """A call-progress callback: from the number's status URL (the caller's leg) or from
    the ``<Sip>`` noun (the leg to OpenAI, with ``ParentCallSid``)."""

    call_sid: str
    status: str
    parent_call_sid: str | None
    sip_response_code: str | None
    duration_s: str | None

    @property
    def sids(self) -> tuple[str, ...]:
        """Every SID that may name our call: the leg itself, then its parent."""
        return tuple(s for s in (self.call_sid, self.parent_call_sid) if s)

    @classmethod
    def from_form(cls, form: Form) -> StatusCallback:
        _required(form, "CallSid", "CallStatus")
        call_sid = _sid(form, "CallSid")
        assert call_sid is not None
        return cls(
            call_sid=call_sid,
            status=_status(form, "CallStatus"),
            parent_call_sid=_sid(form, "ParentCallSid"),
            sip_response_code=form.get("SipResponseCode") or None,
            duration_s=form.get("CallDuration") or None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DialAction:
    """Twilio's request to the ``<Dial action>`` URL: the SIP leg is over, whatever
    ``DialCallStatus`` says, and Twilio wants the next TwiML for the caller's leg."""

    call_sid: str
    dial_status: str
    dial_call_sid: str | None
    sip_response_code: str | None

    @property
    def sids(self) -> tuple[str, ...]:
        """The SIP leg first (what ``X-Twilio-CallSid`` names), then the caller's leg."""
        return tuple(s for s in (self.dial_call_sid, self.call_sid) if s)

    @classmethod
    def from_form(cls, form: Form) -> DialAction:
        _required(form, "CallSid", "DialCallStatus")
        call_sid = _sid(form, "CallSid")
        assert call_sid is not None
        return cls(
            call_sid=call_sid,
            dial_status=_status(form, "DialCallStatus"),
            dial_call_sid=_sid(form, "DialCallSid"),
            sip_response_code=form.get("DialSipResponseCode") or None,
        )
