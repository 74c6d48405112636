"""Twilio's voice webhook through real sockets: TwiML to OpenAI, per-number SIP headers,
refused requests, GET webhooks and SharedKey signatures."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import unquote

import httpx
from twilio.request_validator import RequestValidator

from callserver.settings import Settings
from callserver.testing.fake_openai import FakeOpenAI
from tests.twilio_webhook_support import (
    CALL_SID,
    CONFIG_DIR,
    PUBLIC,
    SIP_BASE,
    TOKEN,
    assert_nothing_started,
    parse_dial,
    post_twilio,
    twilio_settings,
    voice_params,
)


async def test_voice_answers_dial_to_openai_with_context(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    response = await post_twilio(server, "/twilio/voice", voice_params())
    dial, sip, base, headers = parse_dial(response)
    assert dial.get("answerOnBridge") == "true"
    assert dial.get("action") == PUBLIC + "/twilio/dial-action"
    assert dial.get("method") == "POST"
    assert base == SIP_BASE
    assert headers == {
        "X-Callserver-CallSid": CALL_SID,
        "X-Callserver-Route": "orders-line",
        "X-Callserver-Graph": "orders",
        "X-Callserver-Dialed": "+18005550100",
    }
    assert sip.get("statusCallback") == PUBLIC + "/twilio/status"
    assert sip.get("statusCallbackMethod") == "POST"
    events = (sip.get("statusCallbackEvent") or "").split()
    assert {"initiated", "ringing", "answered", "completed"} <= set(events)
    # Dialing is Twilio's job: nothing has started on our side yet.
    assert_nothing_started(server, fake_openai)


@dataclasses.dataclass(frozen=True)
class _RouteWithHeaders:
    graph: Any
    reject_sip_code: int | None
    route_name: str
    sip_headers: dict[str, object]


class _HeaderConfig:
    """Wraps the real config: same graph choice, plus per-number SIP headers."""

    def __init__(self, real: Any, headers: dict[str, object]) -> None:
        self._real = real
        self._headers = headers

    @property
    def current(self) -> Any:
        return self

    def route(self, info: Any) -> _RouteWithHeaders:
        r = self._real.current.route(info)
        return _RouteWithHeaders(r.graph, r.reject_sip_code, r.route_name, self._headers)


async def test_voice_carries_per_number_headers(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    calls = server.services.twilio.calls
    calls._config = _HeaderConfig(
        calls._config,
        {
            "X-Tenant": 42,
            "X-Region": "eu west/1",
            "Tenant": "dropped",
            "X-Callserver-Route": "spoofed",
            "X-Big": "z" * 1500,
        },
    )
    _, _, _, headers = parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    assert headers["X-Tenant"] == "42"
    assert headers["X-Region"] == "eu west/1"
    assert headers["X-Callserver-Route"] == "orders-line"
    assert "Tenant" not in headers and "X-Big" not in headers
    assert unquote("eu%20west%2F1") == headers["X-Region"]


async def test_sip_uri_setting_overrides_project(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    uri = "sips:agent@sip.example.net;transport=tls"
    server = await start_callserver(CONFIG_DIR, **twilio_settings(sip_uri=uri))
    _, _, base, _ = parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    assert base == uri


TWILIO_PATHS = ("/twilio/voice", "/twilio/status", "/twilio/dial-action")


async def test_bad_signatures_are_403_and_start_nothing(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    params = voice_params()
    other_token = RequestValidator("another-token").compute_signature(
        PUBLIC + "/twilio/voice", params
    )
    for signature in (None, "", "bm90LWEtc2lnbmF0dXJl", other_token):
        for path in TWILIO_PATHS:
            response = await post_twilio(server, path, params, signature=signature)
            assert response.status_code == 403, (signature, path, response.text)
            assert "error" in response.json()
    # Signed, then tampered with: the signature covers every form field.
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/voice", params)
    response = await post_twilio(
        server, "/twilio/voice", {**params, "To": "+18005550101"}, signature=signature
    )
    assert response.status_code == 403
    assert_nothing_started(server, fake_openai)


async def test_malformed_requests_are_refused(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    for path, drop in [
        ("/twilio/voice", "CallSid"),
        ("/twilio/voice", "To"),
        ("/twilio/voice", "From"),
        ("/twilio/status", "CallSid"),
        ("/twilio/status", "CallStatus"),
        ("/twilio/dial-action", "DialCallStatus"),
    ]:
        params = {k: v for k, v in voice_params().items() if k != drop}
        response = await post_twilio(server, path, params)
        assert response.status_code == 400, (path, drop, response.text)
        assert drop in response.json()["error"]
    bad_sid = await post_twilio(server, "/twilio/voice", voice_params(call_sid="CA<script>"))
    assert bad_sid.status_code == 400
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(server.url + "/twilio/voice", json=voice_params())
    assert response.status_code == 415
    assert_nothing_started(server, fake_openai)


async def test_without_token_twilio_routes_are_404(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver()
    assert server.services.twilio is None
    response = await post_twilio(server, "/twilio/voice", voice_params())
    assert response.status_code == 404
    assert "TWILIO_AUTH_TOKEN" in response.json()["error"]


async def test_voice_url_configured_for_get(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    """A number whose voice (and status) webhook is set to HTTP GET (issue 13, item 11):
    the fields ride in the query string and Twilio signs the URL alone."""
    from urllib.parse import urlencode

    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    query = urlencode(voice_params())
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/twilio/voice?{query}", {})
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"{server.url}/twilio/voice?{query}", headers={"X-Twilio-Signature": signature}
        )
        _, _, base, headers = parse_dial(response)
        assert base == SIP_BASE and headers["X-Callserver-CallSid"] == CALL_SID
        status = urlencode({"CallSid": CALL_SID, "CallStatus": "canceled"})
        signed = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/twilio/status?{status}", {})
        answer = await client.get(
            f"{server.url}/twilio/status?{status}", headers={"X-Twilio-Signature": signed}
        )
        assert answer.status_code == 200 and answer.json() == {"status": "remembered"}
        tampered = await client.get(
            f"{server.url}/twilio/voice?{query.replace('ringing', 'queued')}",
            headers={"X-Twilio-Signature": signature},
        )
        assert tampered.status_code == 403 and "does not match" in tampered.json()["error"]
    assert_nothing_started(server, fake_openai)


async def test_shared_key_signed_webhooks(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    """Twilio's SharedKey signature setting (issue 13, item 11): the named key's secret and
    algorithm verify it; an unknown key or algorithm is refused with a message that says
    what to configure."""
    secret, key_id = "shared-key-secret-for-tests", "webhooks_sharedkey_01TESTKEY"
    from_env = Settings.from_env({"TWILIO_SHARED_KEYS": f"{key_id}={secret}"})
    assert from_env.twilio_shared_keys[key_id].get_secret_value() == secret
    server = await start_callserver(
        CONFIG_DIR, **twilio_settings(twilio_shared_keys={key_id: secret})
    )
    params = voice_params()
    url = PUBLIC + "/twilio/voice"
    sha256 = RequestValidator(secret).compute_signature(url, params, "HMAC_SHA256")
    setting = f"key={key_id},algorithm=HMAC_SHA256"
    response = await post_twilio(
        server,
        "/twilio/voice",
        params,
        signature=sha256,
        headers={"X-Twilio-Webhooks-Signature-Settings": setting},
    )
    parse_dial(response)

    unknown = await post_twilio(
        server,
        "/twilio/voice",
        params,
        signature=sha256,
        headers={
            "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_OTHER,"
            "algorithm=HMAC_SHA256"
        },
    )
    assert unknown.status_code == 403
    error = unknown.json()["error"]
    assert "webhooks_sharedkey_OTHER" in error and "TWILIO_SHARED_KEYS" in error
    assert secret not in unknown.text
    md5 = await post_twilio(
        server,
        "/twilio/voice",
        params,
        signature=sha256,
        headers={"X-Twilio-Webhooks-Signature-Settings": f"key={key_id},algorithm=HMAC_MD5"},
    )
    assert md5.status_code == 403 and "HMAC_MD5" in md5.json()["error"]
    assert "HMAC_SHA256" in md5.json()["error"]
