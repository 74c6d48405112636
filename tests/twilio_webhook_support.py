"""Helpers for the Twilio webhook tests: settings, signed form posts, reading TwiML answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl

import httpx
from twilio.request_validator import RequestValidator

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer
from tests.conftest import ROOT

TOKEN = "twilio-test-auth-token"
PUBLIC = "https://calls.example.com"
PROJECT = "proj_test123"
SIP_BASE = f"sip:{PROJECT}@sip.api.openai.com;transport=tls"
CALL_SID = "CA" + "0123456789abcdef" * 2
CONFIG_DIR = ROOT / "config"
"""The bundled config with its routes.yaml: +18005550100 -> orders, callers +1900... rejected."""


def twilio_settings(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "twilio_auth_token": TOKEN,
        "public_base_url": PUBLIC,
        "openai_project_id": PROJECT,
    }
    values.update(overrides)
    return values


def voice_params(call_sid: str = CALL_SID, **overrides: str) -> dict[str, str]:
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "f" * 32,
        "From": "+14155550123",
        "To": "+18005550100",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    params.update(overrides)
    return params


async def post_twilio(
    server: RunningServer,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    signature: str | None = "compute",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a form the way Twilio does, signed for ``signed_url`` (default: PUBLIC + path)."""
    all_headers = dict(headers or {})
    if signature == "compute":
        url = signed_url or PUBLIC + path
        all_headers["X-Twilio-Signature"] = RequestValidator(TOKEN).compute_signature(url, params)
    elif signature is not None:
        all_headers["X-Twilio-Signature"] = signature
    # Plain HTTP to 127.0.0.1: skip loading CA certificates (40 ms per client).
    async with httpx.AsyncClient(timeout=5, verify=False) as client:
        return await client.post(server.url + path, data=params, headers=all_headers)


def parse_dial(response: httpx.Response) -> tuple[ET.Element, ET.Element, str, dict[str, str]]:
    """(Dial, Sip, base URI, headers) of a dialing TwiML answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    dial = root.find("Dial")
    assert dial is not None, response.text
    sip = dial.find("Sip")
    assert sip is not None and sip.text
    base, _, query = sip.text.partition("?")
    headers = dict(parse_qsl(query, keep_blank_values=True))
    assert len(sip.text) < 1024
    return dial, sip, base, headers


def reject_reason(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.text)
    assert root.find("Dial") is None
    element = root.find("Reject")
    assert element is not None, response.text
    return element.get("reason")


def assert_nothing_started(server: RunningServer, fake: FakeOpenAI) -> None:
    assert server.services.manager.active_count == 0
    assert fake.requests == []
