"""The fake OpenAI's event builders, schema checks and signed webhooks (no websocket)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from svix.webhooks import Webhook

from callserver.testing import server_events as se
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.schemas import (
    client_event_errors,
    errors,
    server_event_errors,
)
from callserver.testing.webhook_sender import incoming_call_event, send_webhook, sign
from tests.fake_openai_support import ACCEPT_BODY

BUILDERS: dict[str, Callable[[], dict[str, Any] | list[dict[str, Any]]]] = {
    "session_created": lambda: se.session_created(None),
    "session_created_config": lambda: se.session_created(ACCEPT_BODY),
    "session_updated": lambda: se.session_updated(ACCEPT_BODY),
    "speech_started": lambda: se.speech_started("item_1", 120),
    "speech_stopped": lambda: se.speech_stopped("item_1"),
    "input_transcription_completed": lambda: se.input_transcription_completed("i", "hello"),
    "function_call_turn": lambda: se.function_call_turn("f", {"a": 1}),
    "function_call_turn_str": lambda: se.function_call_turn("f", "{}", "c1", "resp_1"),
    "assistant_turn": lambda: se.assistant_turn("Hi, how can I help?"),
    "assistant_turn_empty": lambda: se.assistant_turn(""),
    "response_created": lambda: se.response_created(),
    "response_done": lambda: se.response_done(),
    "response_cancelled": lambda: se.response_done(status="cancelled", reason="turn_detected"),
    "item_added": lambda: se.conversation_item_added(
        {"type": "function_call_output", "call_id": "c", "output": "x", "id": "item_1"}
    ),
    "item_done": lambda: se.conversation_item_done(
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    ),
    "error": lambda: se.error("session_expired", "Your session hit the maximum duration."),
    "dtmf": lambda: se.dtmf("#"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_validate(name: str) -> None:
    built = BUILDERS[name]()
    events = built if isinstance(built, list) else [built]
    for event in events:
        assert server_event_errors(event) == [], event
    with_ids = [
        e["event_id"] for e in events if e["type"] != "input_audio_buffer.dtmf_event_received"
    ]
    assert len(set(with_ids)) == len(with_ids)


def test_turn_shapes() -> None:
    types = [e["type"] for e in se.function_call_turn("f", {})]
    assert types[0] == "response.created" and types[-1] == "response.done"
    assert "response.function_call_arguments.done" in types
    assert "event_id" not in se.dtmf("1")


def test_schema_modes() -> None:
    assert client_event_errors({"type": "response.create"}) == []
    assert client_event_errors({"type": "response.create", "event_id": None}) != []
    assert client_event_errors({"type": "nope"}) == ["type: unknown client event type 'nope'"]
    assert server_event_errors({**se.speech_started(), "extra": 1, "item_id": None}) == []
    assert errors("RealtimeCallReferRequest", {"target_uri": "tel:+1"}) == []
    assert errors("RealtimeCallReferRequest", {"target_uri": "x", "y": 1}) != []
    loose = {"type": "response.create", "extra": 1}
    assert errors("RealtimeClientEventResponseCreate", loose, strict=False) == []


def test_webhook_signature_vector() -> None:
    body = (
        b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": '
        b'1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
    )
    headers = sign(
        "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=",
        body,
        msg_id="wh_685c059ae39c8190af8c71ed1022a24d",
        timestamp=1750861210,
    )
    assert headers == {
        "webhook-id": "wh_685c059ae39c8190af8c71ed1022a24d",
        "webhook-timestamp": "1750861210",
        "webhook-signature": "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
    }


def test_incoming_call_event_shape() -> None:
    event = incoming_call_event(extra_headers=[("X-Tenant", "42"), ("X-Tenant", "43")])
    assert errors("WebhookRealtimeCallIncoming", event) == []
    assert event["data"]["call_id"].startswith("rtc_") and len(event["data"]["call_id"]) == 36
    names = [h["name"] for h in event["data"]["sip_headers"]]
    assert names == ["From", "To", "Call-ID", "X-Tenant", "X-Tenant"]
    assert event["data"]["sip_headers"][0]["value"] == "sip:+14255551212@sip.example.com"


async def test_send_incoming_call_is_signed(fake_openai: FakeOpenAI) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    seen: list[dict[str, Any]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        Webhook(secret).verify(request.content, dict(request.headers))  # raises if bad
        seen.append(json.loads(request.content))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        call_id, response = await fake_openai.send_incoming_call(
            "http://callserver/webhooks/openai", secret, client=client, from_="+15550001111"
        )
        assert response.status_code == 200
        event = incoming_call_event("rtc_x")
        again = await send_webhook("http://x/", secret, event, msg_id="wh_1", client=client)
        assert again.status_code == 200
    assert fake_openai.call_state(call_id) == "ringing"
    assert seen[0]["data"]["call_id"] == call_id
    assert seen[0]["data"]["sip_headers"][0]["value"] == "sip:+15550001111@sip.example.com"
