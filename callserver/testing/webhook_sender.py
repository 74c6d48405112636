"""Deliver webhooks the way OpenAI's sender does: the body, Standard Webhooks signing, POST.

Used by tests and demos to ring callserver without OpenAI: the signature comes from the same
library callserver verifies with (``svix``), so a mismatch means a real bug in the receiver.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from svix.webhooks import Webhook

__all__ = ["incoming_call_event", "live_incoming_event", "new_call_id", "send_webhook", "sign"]

SIP_DOMAIN = "sip.example.com"
SEND_TIMEOUT = 10.0


def new_call_id() -> str:
    """A call id shaped like OpenAI's (``rtc_<32 hex>``)."""
    return f"rtc_{uuid.uuid4().hex}"


def incoming_call_event(
    call_id: str | None = None,
    *,
    from_: str = "+14255551212",
    to: str = "+18005551212",
    extra_headers: Iterable[tuple[str, str]] = (),
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``realtime.call.incoming`` webhook body; ``extra_headers`` follow in order.

    ``From``/``To`` become SIP URIs (``sip:+1...@sip.example.com``) as a carrier sends them.
    """
    return {
        "object": "event",
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id or new_call_id(),
            "sip_headers": _sip_headers(from_, to, extra_headers),
        },
    }


def _sip_headers(
    from_: str, to: str, extra: Iterable[tuple[str, str]], call_id: str | None = None
) -> list[dict[str, str]]:
    return [
        {"name": "From", "value": f"sip:{from_}@{SIP_DOMAIN}"},
        {"name": "To", "value": f"sip:{to}@{SIP_DOMAIN}"},
        {"name": "Call-ID", "value": call_id or str(uuid.uuid4())},
        *({"name": name, "value": value} for name, value in extra),
    ]


def live_incoming_event(
    session_id: str,
    *,
    event_type: str = "live.transport.incoming",
    from_: str = "+14255551212",
    to: str = "+18005551212",
    extra_headers: Iterable[tuple[str, str]] = (),
    event_id: str | None = None,
    media_security: str | None = "srtp",
    sip_call_id: str | None = None,
) -> dict[str, Any]:
    """A GPT-Live incoming-call webhook body: ``live.transport.incoming`` (``data.type:
    "sip"``), or the deprecated ``live.call.incoming`` (no ``data.type``)."""
    data: dict[str, Any] = {
        "session_id": session_id,
        "sip_headers": _sip_headers(from_, to, extra_headers, sip_call_id),
    }
    if event_type == "live.transport.incoming":
        data["type"] = "sip"
    if media_security is not None:
        data["sip_media_security"] = media_security
    return {
        "object": "event",
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created_at": int(time.time()),
        "data": data,
    }


def sign(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The ``webhook-id``/``webhook-timestamp``/``webhook-signature`` headers for ``body``.

    ``msg_id`` is the delivery id (reuse it to simulate a redelivery); ``timestamp`` is Unix
    seconds (set it to test stale or future deliveries).
    """
    msg_id = msg_id or f"wh_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode("utf-8")
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


async def send_webhook(
    url: str,
    secret: str,
    event: dict[str, Any],
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """POST ``event`` signed with ``secret`` to ``url``; returns the receiver's response."""
    body = json.dumps(event).encode("utf-8")
    headers = {
        "content-type": "application/json",
        "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
        **sign(secret, body, msg_id=msg_id, timestamp=timestamp),
    }
    if client is not None:
        return await client.post(url, content=body, headers=headers)
    async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as own_client:
        return await own_client.post(url, content=body, headers=headers)
