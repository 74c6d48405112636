"""Twilio signatures and public URLs without a server: the published vector, SharedKey
headers, URL reconstruction, SIP URI headers."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from callserver.settings import Settings
from callserver.twilio_routes import build_twilio
from callserver.webhooks import twiml
from callserver.webhooks.errors import WebhookError
from callserver.webhooks.twilio import TwilioSignature, public_base, public_url
from tests.twilio_webhook_support import (
    PUBLIC,
    SIP_BASE,
    TOKEN,
)


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
