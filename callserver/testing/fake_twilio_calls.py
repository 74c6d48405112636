"""What the fake Twilio keeps and speaks: its calls, their callees, its errors and TwiML.

Plain records and pure helpers, apart from the server (:mod:`fake_twilio_api`) and the
bridge to the fake OpenAI (:mod:`fake_twilio_bridge`), which both need them.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Literal
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse

from callserver.testing.fake_callee import ScriptedCallee

__all__ = [
    "E164",
    "FakeTwilioCall",
    "TwilioCallee",
    "new_sid",
    "sip_of",
    "twilio_error",
    "uri_headers",
]

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
CallOutcome = Literal["answer", "machine", "busy", "no-answer", "failed"]


def new_sid(prefix: str = "CA") -> str:
    """A Twilio-shaped sid (``CA`` + 32 hex digits for a call)."""
    return prefix + uuid.uuid4().hex


@dataclasses.dataclass
class TwilioCallee(ScriptedCallee):
    """How the fake callee of one number behaves on Twilio (``machine``: voicemail)."""

    outcome: CallOutcome = "answer"


@dataclasses.dataclass
class FakeTwilioCall:
    """One call created through the fake's Calls API, with what Twilio reported of it."""

    sid: str
    to: str
    from_: str
    url: str
    status_url: str | None
    events: tuple[str, ...]
    machine_detection: str | None
    timeout_s: int
    status: str = "queued"
    answered_by: str | None = None
    twiml: str | None = None
    bridged: tuple[str, str] | None = None
    """(engine, OpenAI call id) of the leg bridged to OpenAI."""
    callbacks: list[str] = dataclasses.field(default_factory=list)
    created_at: float = dataclasses.field(default_factory=time.monotonic)


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """An error answer in Twilio's shape (``code``, ``message``, ``more_info``, ``status``)."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def sip_of(twiml: str) -> str | None:
    """The ``<Dial><Sip>`` URI of a TwiML answer, or None (``<Hangup/>``, anything else)."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return None
    sip = root.find("./Dial/Sip")
    return sip.text.strip() if sip is not None and sip.text else None


def uri_headers(uri: str) -> list[tuple[str, str]]:
    """Custom SIP headers a ``<Sip>`` URI carries in its query (``?X-Foo=1&X-Bar=2``)."""
    _, _, query = uri.partition("?")
    return [(k, v) for k, v in parse_qsl(query) if k.startswith("X-")]
