"""The TwiML callserver answers Twilio with, built by the ``twilio`` package's VoiceResponse.

Custom SIP headers ride in the ``<Sip>`` URI's query (``sip:...?X-Tenant=42``). Twilio refuses
names that do not start with ``X-`` and URIs of 1024 characters or more, and a refused
``<Sip>`` fails the whole call, so headers that do not fit are dropped here with a log line
instead: the call still reaches the agent, with less context.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import quote

from twilio.twiml.voice_response import VoiceResponse

log = logging.getLogger(__name__)

MAX_SIP_URI_CHARS = 1023
"""Twilio: the URI with its headers must stay under 1024 characters."""
STATUS_CALLBACK_EVENTS = "initiated ringing answered completed"
TWIML_MEDIA_TYPE = "application/xml"

_HEADER_NAME_RE = re.compile(r"^X-[A-Za-z0-9][A-Za-z0-9\-]{0,63}$")
RESERVED_PREFIXES = ("x-twilio-",)
"""Twilio sets these itself; a configured one would be ignored or clash."""

RejectReason = Literal["busy", "rejected"]


def default_sip_uri(project_id: str) -> str:
    """OpenAI's SIP connector for a project, over TLS (protocol.md section 1)."""
    return f"sip:{project_id}@sip.api.openai.com;transport=tls"


def valid_header_name(name: str) -> bool:
    """``X-`` plus letters, digits and dashes, and not one of Twilio's own."""
    return bool(_HEADER_NAME_RE.match(name)) and not name.lower().startswith(RESERVED_PREFIXES)


def header_items(
    headers: Mapping[str, object] | Iterable[tuple[str, object]] | None,
) -> list[tuple[str, str]]:
    """Normalise configured headers (a mapping or pairs; values may be numbers) to pairs."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), "" if value is None else str(value)) for name, value in items]


def sip_uri_with_headers(base: str, headers: Iterable[tuple[str, str]]) -> str:
    """``base`` plus as many ``X-`` headers (in order) as fit under Twilio's limit.

    Invalid names, empty values and headers that would push the URI past the limit are
    skipped with a warning; the result is always a URI Twilio accepts (the base alone must
    be valid, which :class:`~callserver.calls.twilio_calls.TwilioCalls` checks at start-up).
    """
    uri = base
    separator = "&" if "?" in base else "?"
    seen: set[str] = set()
    for name, value in headers:
        if not valid_header_name(name):
            log.warning("SIP header %r dropped: names must be X-<letters/digits/->", name[:80])
            continue
        if name.lower() in seen:
            log.warning("SIP header %s dropped: given twice", name)
            continue
        if value == "":
            continue
        part = f"{separator}{name}={quote(value, safe='')}"
        if len(uri) + len(part) > MAX_SIP_URI_CHARS:
            log.warning(
                "SIP header %s dropped: the <Sip> URI would exceed %d characters",
                name,
                MAX_SIP_URI_CHARS + 1,
            )
            continue
        seen.add(name.lower())
        uri += part
        separator = "&"
    return uri


def dial_sip(sip_uri: str, *, action_url: str, status_url: str) -> str:
    """Bridge the caller to ``sip_uri``.

    ``answerOnBridge`` keeps the caller hearing ringing (no billing, no dead air) until the
    agent has accepted. The ``<Sip>`` status callback reports the leg to OpenAI; the Dial
    ``action`` fires when that leg is over, so either one ends our side of the call.
    """
    response = VoiceResponse()
    dial = response.dial(answer_on_bridge=True, action=action_url, method="POST")
    dial.sip(
        sip_uri,
        status_callback=status_url,
        status_callback_event=STATUS_CALLBACK_EVENTS,
        status_callback_method="POST",
    )
    return str(response.to_xml())


def reject(reason: RejectReason = "busy", *, say: str | None = None) -> str:
    """Refuse the call before any SIP leg exists: a busy tone / rejection, or a short
    spoken message and a hang-up when the operator configured one."""
    response = VoiceResponse()
    if say:
        response.say(say)
        response.hangup()
    else:
        response.reject(reason=reason)
    return str(response.to_xml())


def hangup() -> str:
    """End the caller's leg (the answer to a Dial action: the agent leg is over)."""
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())
