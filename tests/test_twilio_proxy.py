"""Twilio webhooks behind a proxy: forwarded headers count only when trusted, and a public
base URL with a prefix."""

from __future__ import annotations

from typing import Any

from callserver.testing.fake_openai import FakeOpenAI
from tests.twilio_webhook_support import (
    CONFIG_DIR,
    PUBLIC,
    assert_nothing_started,
    parse_dial,
    post_twilio,
    twilio_settings,
    voice_params,
)

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
