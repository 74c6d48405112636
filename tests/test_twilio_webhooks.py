"""Twilio's voice webhook through real sockets: signatures, public URLs, TwiML, admission."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import pytest
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from callserver.calls.records import CallRecord
from callserver.settings import Settings
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer
from callserver.twilio_routes import build_twilio
from callserver.webhooks import twiml
from callserver.webhooks.errors import WebhookError
from callserver.webhooks.twilio import TwilioSignature, public_base, public_url
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


# ---- the public vector and URL reconstruction (no server needed) ---------------------------


def _request(path: str, query: str, headers: dict[str, str], scheme: str = "http") -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "server": ("10.0.0.5", 8080),
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_public_vector() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert RequestValidator("12345").compute_signature(url, VECTOR_PARAMS) == (
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    request = _request("/myapp.php", "foo=1&bar=2", {"host": "10.0.0.5:8080"})
    base = public_base(request, public_base_url="https://mycompany.com/", trust_proxy=False)
    assert public_url(request, base) == url
    form = ImmutableMultiDict(list(VECTOR_PARAMS.items()))
    TwilioSignature("12345").check(url, form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", None)
    with pytest.raises(WebhookError) as err:
        TwilioSignature("12345").check(url, form, "RSOYDt4T1cUTdK1PDd93/VVr8B9=", None)
    assert err.value.status == 403
    tampered = ImmutableMultiDict([*VECTOR_PARAMS.items(), ("Extra", "1")])
    with pytest.raises(WebhookError):
        TwilioSignature("12345").check(url, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", None)


def test_shared_key_signatures_name_their_algorithm() -> None:
    """Webhooks signed with a SharedKey say so (and the algorithm) in a header."""
    url = PUBLIC + "/twilio/status"
    form = ImmutableMultiDict(list(VECTOR_PARAMS.items()))
    sha256 = RequestValidator(TOKEN).compute_signature(url, VECTOR_PARAMS, "HMAC_SHA256")
    signature = TwilioSignature(TOKEN)
    signature.check(url, form, sha256, "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")
    for settings in (None, "key=webhooks_sharedkey_1,algorithm=HMAC_MD5"):
        with pytest.raises(WebhookError) as err:
            signature.check(url, form, sha256, settings)
        assert err.value.status == 403


def test_token_without_sip_target_refuses_to_start() -> None:
    settings = Settings(twilio_auth_token=TOKEN)
    with pytest.raises(RuntimeError, match="OPENAI_PROJECT_ID"):
        build_twilio(settings, None, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="sip:"):
        build_twilio(Settings(twilio_auth_token=TOKEN, sip_uri="http://x"), None, None)  # type: ignore[arg-type]
    assert build_twilio(Settings(), None, None) is None  # type: ignore[arg-type]


def test_public_base_trusts_forwarded_headers_only_when_told() -> None:
    headers = {
        "host": "10.0.0.5:8080",
        "x-forwarded-proto": "https, http",
        "x-forwarded-host": "calls.example.com, inner",
    }
    request = _request("/twilio/voice", "", headers)
    assert public_base(request, public_base_url=None, trust_proxy=False) == "http://10.0.0.5:8080"
    assert public_base(request, public_base_url=None, trust_proxy=True) == (
        "https://calls.example.com"
    )
    bad = _request("/twilio/voice", "", {**headers, "x-forwarded-host": "evil/path"})
    with pytest.raises(WebhookError):
        public_base(bad, public_base_url=None, trust_proxy=True)


def test_sip_uri_headers_are_validated_encoded_and_bounded() -> None:
    uri = twiml.sip_uri_with_headers(
        SIP_BASE,
        [
            ("X-Tenant", "42 & co"),
            ("Tenant", "no-x-prefix"),
            ("X-Twilio-Foo", "reserved"),
            ("X-Bad Name", "space"),
            ("X-Empty", ""),
            ("X-Tenant", "again"),
            ("X-Huge", "a" * 2000),
            ("X-After", "still fits"),
        ],
    )
    assert uri.startswith(SIP_BASE + "?")
    assert len(uri) < 1024
    query = uri.split("?", 1)[1]
    assert query == "X-Tenant=42%20%26%20co&X-After=still%20fits"
    # Filling up: every kept header fits, the first that does not is dropped, later small
    # ones still go in.
    many = [(f"X-H{i}", "v" * 100) for i in range(20)]
    full = twiml.sip_uri_with_headers(SIP_BASE, many)
    assert 900 < len(full) < 1024
    assert dict(parse_qsl(full.split("?", 1)[1]))["X-H0"] == "v" * 100


# ---- through sockets ------------------------------------------------------------------------


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


# ---- behind a proxy -------------------------------------------------------------------------

PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "calls.example.com"}


async def test_proxy_headers_ignored_unless_trusted(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings(public_base_url=None))
    response = await post_twilio(server, "/twilio/voice", voice_params(), headers=PROXY_HEADERS)
    assert response.status_code == 403
    # Without a proxy, the URL this socket received is the one Twilio signed.
    direct = await post_twilio(
        server, "/twilio/voice", voice_params(), signed_url=server.url + "/twilio/voice"
    )
    dial, sip, _, _ = parse_dial(direct)
    assert dial.get("action") == server.url + "/twilio/dial-action"
    assert sip.get("statusCallback") == server.url + "/twilio/status"
    assert_nothing_started(server, fake_openai)


async def test_trusted_proxy_rebuilds_public_url(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(
        CONFIG_DIR, **twilio_settings(public_base_url=None, trust_proxy=True)
    )
    response = await post_twilio(server, "/twilio/voice", voice_params(), headers=PROXY_HEADERS)
    dial, sip, _, _ = parse_dial(response)
    assert dial.get("action") == PUBLIC + "/twilio/dial-action"
    assert sip.get("statusCallback") == PUBLIC + "/twilio/status"
    # Signed for the internal URL, received through the proxy: refused.
    wrong = await post_twilio(
        server,
        "/twilio/voice",
        voice_params(),
        signed_url=server.url + "/twilio/voice",
        headers=PROXY_HEADERS,
    )
    assert wrong.status_code == 403


async def test_public_base_url_with_prefix(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    base = "https://example.org/callserver"
    server = await start_callserver(CONFIG_DIR, **twilio_settings(public_base_url=base + "/"))
    response = await post_twilio(
        server, "/twilio/voice", voice_params(), signed_url=base + "/twilio/voice"
    )
    dial, _, _, _ = parse_dial(response)
    assert dial.get("action") == base + "/twilio/dial-action"


# ---- admission before dialing ---------------------------------------------------------------


async def test_full_instance_answers_busy(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings(max_concurrent_calls=1))
    registry = server.services.manager.registry
    await registry.put(CallRecord(call_id="rtc_someone_else"))
    response = await post_twilio(server, "/twilio/voice", voice_params())
    assert reject_reason(response) == "busy"
    record = await registry.get("rtc_someone_else")
    assert record is not None
    await registry.finished(record)
    # A slot freed: the next call dials again, and the check took no slot.
    parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    assert registry.slots_in_use() == 0  # type: ignore[attr-defined]


async def test_draining_answers_busy(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    server.services.manager.begin_drain()
    response = await post_twilio(server, "/twilio/voice", voice_params())
    assert reject_reason(response) == "busy"
    assert_nothing_started(server, fake_openai)


async def test_reject_route_answers_rejected(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    # routes.yaml: callers starting +1900 are rejected with 403.
    response = await post_twilio(
        server, "/twilio/voice", voice_params(From="+19005551234", To="+18005551212")
    )
    assert reject_reason(response) == "rejected"
    assert_nothing_started(server, fake_openai)


async def test_reject_with_configured_message(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    server.services.twilio.reject_say = "We are closed. Please call again tomorrow."
    server.services.manager.begin_drain()
    response = await post_twilio(server, "/twilio/voice", voice_params())
    root = ET.fromstring(response.text)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "We are closed. Please call again tomorrow."


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
