"""The fake OpenAI, exercised through real sockets (httpx for REST, websockets for the ws)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from svix.webhooks import Webhook
from websockets.asyncio.client import ClientConnection

from callserver.testing import server_events as se
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import FakeConnection
from callserver.testing.schemas import (
    client_event_errors,
    errors,
    server_event_errors,
)
from callserver.testing.webhook_sender import incoming_call_event, send_webhook, sign

AUTH = {"Authorization": "Bearer sk-test"}
ACCEPT_BODY: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You answer the phone for Acme.",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad"},
        },
        "output": {"voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
    ],
}


@pytest.fixture
async def rest(fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH, timeout=5) as c:
        yield c


async def accepted_call(fake: FakeOpenAI, rest: httpx.AsyncClient) -> str:
    call_id = fake.add_call()
    response = await rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert response.status_code == 200, response.text
    return call_id


async def connect(fake: FakeOpenAI, call_id: str | None, **headers: str) -> ClientConnection:
    url = fake.realtime_url(call_id) if call_id else fake.ws_url
    return await websockets.connect(url, additional_headers=headers or AUTH, open_timeout=5)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def recv_until(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while (event := await recv(ws))["type"] != type_:
        pass
    return event


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the client sees the connection close; the code it observed."""
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


@pytest.fixture
async def live(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> AsyncIterator[tuple[ClientConnection, FakeConnection]]:
    """An accepted call with a connected client, ``session.created`` already read."""
    call_id = await accepted_call(fake_openai, rest)
    ws = await connect(fake_openai, call_id)
    assert (await recv(ws))["type"] == "session.created"
    conn = await fake_openai.wait_connected(call_id)
    yield ws, conn
    await ws.close()


# -- REST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "sk"}])
async def test_rest_requires_bearer_token(fake_openai: FakeOpenAI, headers: dict) -> None:
    call_id = fake_openai.add_call()
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=headers) as client:
        response = await client.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fake_openai.call_state(call_id) == "ringing"
    assert fake_openai.requests_for(call_id, "accept")[0].status == 401


async def test_unknown_and_ended_calls_are_404(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    response = await rest.post("/realtime/calls/rtc_nope/hangup")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    call_id = fake_openai.add_call()
    assert (await rest.post(f"/realtime/calls/{call_id}/reject", json={})).status_code == 200
    assert fake_openai.calls[call_id].reject_status == 603
    assert (await rest.post(f"/realtime/calls/{call_id}/hangup")).status_code == 404
    assert fake_openai.call_state(call_id) == "ended"
    assert fake_openai.hangup_observed(call_id)


async def test_accept_valid_body_once(fake_openai: FakeOpenAI, rest: httpx.AsyncClient) -> None:
    call_id = await accepted_call(fake_openai, rest)
    assert fake_openai.call_state(call_id) == "accepted"
    assert fake_openai.calls[call_id].session == ACCEPT_BODY
    (request,) = fake_openai.requests_for(call_id, "accept")
    assert (request.method, request.status, request.json) == ("POST", 200, ACCEPT_BODY)
    assert request.path == f"/v1/realtime/calls/{call_id}/accept"
    again = await rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert again.status_code == 400
    assert again.json()["error"]["type"] == "invalid_request_error"


async def test_accept_invalid_body_is_400_and_recorded(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    body = {**ACCEPT_BODY, "voice": "marin"}  # beta field, not GA
    response = await rest.post(f"/realtime/calls/{call_id}/accept", json=body)
    assert response.status_code == 400
    assert "voice" in response.json()["error"]["message"]
    assert fake_openai.call_state(call_id) == "ringing"
    ((cid, action, errs),) = fake_openai.rest_schema_errors
    assert (cid, action) == (call_id, "accept") and any("voice" in e for e in errs)
    assert fake_openai.requests_for(call_id)[0].errors == errs


async def test_refer_validates_and_then_ends_the_call(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = await accepted_call(fake_openai, rest)
    ws = await connect(fake_openai, call_id)
    url = f"/realtime/calls/{call_id}/refer"
    assert (await rest.post(url, json={"target": "tel:+1"})).status_code == 400
    assert (await rest.post(url, json={"target_uri": "tel:+14155550123"})).status_code == 200
    assert fake_openai.calls[call_id].refer_target == "tel:+14155550123"
    assert await close_code(ws) == 1000
    assert fake_openai.call_state(call_id) == "ended"
    assert fake_openai.calls[call_id].ended_by == "refer"


async def test_scripted_failures_are_consumed_in_order(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    other = fake_openai.add_call()
    fake_openai.fail("accept", status=503, times=2)
    fake_openai.fail("accept", status=429, call_id=other, body={"error": {"message": "slow"}})
    url = f"/realtime/calls/{call_id}/accept"
    first = await rest.post(url, json=ACCEPT_BODY)
    assert first.status_code == 503 and first.json()["error"]["type"] == "server_error"
    assert (await rest.post(url, json=ACCEPT_BODY)).status_code == 503
    assert (await rest.post(url, json=ACCEPT_BODY)).status_code == 200
    response = await rest.post(f"/realtime/calls/{other}/accept", json=ACCEPT_BODY)
    assert (response.status_code, response.json()) == (429, {"error": {"message": "slow"}})
    assert [r.status for r in fake_openai.requests] == [503, 503, 200, 429]


async def test_scripted_delay_holds_the_request(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    fake_openai.delay("accept", 0.3)
    task = asyncio.create_task(rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY))
    await asyncio.sleep(0.1)
    assert [r.status for r in fake_openai.requests_for(call_id)] == [0]  # still in flight
    assert (await task).status_code == 200
    assert (await rest.post(f"/realtime/calls/{call_id}/hangup")).status_code == 200


# -- websocket --------------------------------------------------------------------------------


async def test_ws_refusals(fake_openai: FakeOpenAI, rest: httpx.AsyncClient) -> None:
    ringing = fake_openai.add_call()
    accepted = await accepted_call(fake_openai, rest)
    cases: list[tuple[str | None, dict[str, str], int]] = [
        (None, AUTH, 400),
        ("rtc_unknown", AUTH, 404),
        (ringing, AUTH, 400),
        (accepted, {"X-Nothing": "1"}, 401),
    ]
    for call_id, headers, status in cases:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(fake_openai, call_id, **headers)
        assert refused.value.response.status_code == status
    fake_openai.fail("realtime", status=500, call_id=accepted)
    with pytest.raises(websockets.InvalidStatus):
        await connect(fake_openai, accepted)
    assert fake_openai.connections == {}
    ws = await connect(fake_openai, accepted)  # the failure was consumed
    await ws.close()


async def test_session_created_carries_the_accepted_config(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = await accepted_call(fake_openai, rest)
    ws = await connect(fake_openai, call_id)
    event = await recv(ws)
    assert event["type"] == "session.created" and server_event_errors(event) == []
    assert event["session"]["instructions"] == ACCEPT_BODY["instructions"]
    assert event["session"]["audio"]["output"]["voice"] == "marin"
    assert event["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    await ws.close()


async def test_auto_replies(live: tuple[ClientConnection, FakeConnection]) -> None:
    ws, conn = live
    update = {"type": "session.update", "session": {"type": "realtime", "instructions": "new"}}
    await ws.send(json.dumps(update))
    updated = await recv(ws)
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "new"
    assert updated["session"]["audio"]["output"]["voice"] == "marin"  # merged, not replaced

    item = {"type": "function_call_output", "call_id": "call_1", "output": "{}"}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    added, done = await recv(ws), await recv(ws)
    assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
    assert added["item"]["id"] and added["item"]["output"] == "{}"

    await ws.send(json.dumps({"type": "response.create"}))
    created, finished = await recv(ws), await recv(ws)
    assert (created["type"], finished["type"]) == ("response.created", "response.done")
    assert finished["response"]["status"] == "completed" and finished["response"]["usage"]

    await ws.send(json.dumps({"type": "response.cancel"}))
    assert (await recv(ws))["error"]["code"] == "response_cancel_not_active"
    for event in [updated, added, done, created, finished]:
        assert server_event_errors(event) == []
    assert conn.schema_errors == []


async def test_cancel_active_response_and_override_replies(
    fake_openai: FakeOpenAI, live: tuple[ClientConnection, FakeConnection]
) -> None:
    ws, conn = live
    conn.auto_respond = False
    await ws.send(json.dumps({"type": "response.create"}))
    await conn.expect("response.create")
    await conn.send(se.response_created("resp_1"))
    assert (await recv(ws))["type"] == "response.created"
    await ws.send(json.dumps({"type": "response.cancel"}))
    done = await recv(ws)
    assert done["response"]["id"] == "resp_1" and done["response"]["status"] == "cancelled"

    conn.auto_replies["response.create"] = lambda c, e: se.assistant_turn("Hello there")
    await ws.send(json.dumps({"type": "response.create"}))
    transcript = await recv_until(ws, "response.output_audio_transcript.done")
    assert transcript["transcript"] == "Hello there"
    conn.auto_replies["session.update"] = None
    await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    await conn.expect("session.update")
    await recv_until(ws, "response.done")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.1)


async def test_expect_finds_past_and_future_events(
    live: tuple[ClientConnection, FakeConnection],
) -> None:
    ws, conn = live
    for n in range(2):
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": f"e{n}"}))
    second = await conn.expect("input_audio_buffer.clear", lambda e: e["event_id"] == "e1")
    first = await conn.expect("input_audio_buffer.clear")
    assert (first["event_id"], second["event_id"]) == ("e0", "e1")
    later = asyncio.create_task(conn.expect("input_audio_buffer.commit"))
    await asyncio.sleep(0.05)
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    assert (await later)["type"] == "input_audio_buffer.commit"
    with pytest.raises(AssertionError, match=r"input_audio_buffer\.clear"):
        await conn.expect("response.create", timeout=0.1)


async def test_invalid_client_events_are_recorded(
    fake_openai: FakeOpenAI, live: tuple[ClientConnection, FakeConnection]
) -> None:
    ws, conn = live
    bad = {"type": "session.update", "session": {"type": "realtime", "voice": "marin"}}
    await ws.send(json.dumps(bad))
    await conn.expect("session.update")
    ((call_id, event, errs),) = fake_openai.client_schema_errors
    assert (call_id, event) == (conn.call_id, bad)
    assert any("voice" in e for e in errs)


async def test_drop_is_1006_at_the_client_and_the_call_survives(
    fake_openai: FakeOpenAI, live: tuple[ClientConnection, FakeConnection]
) -> None:
    ws, conn = live
    await conn.drop()
    assert await close_code(ws) == 1006
    assert conn.closed.is_set() and conn.close_code == 1006
    assert fake_openai.call_state(conn.call_id) == "accepted"  # a dropped socket is not a hangup
    again = await connect(fake_openai, conn.call_id)
    second = await fake_openai.wait_connected(conn.call_id, index=1)
    assert second is not conn and second is await fake_openai.wait_connected(conn.call_id)
    await again.close()
    await second.wait_closed()
    assert second.close_code == 1000


async def test_accept_any_makes_unknown_calls_ring() -> None:
    async with (
        FakeOpenAI(accept_any=True) as fake,
        httpx.AsyncClient(base_url=fake.base_url, headers=AUTH) as client,
    ):
        response = await client.post("/realtime/calls/rtc_demo/accept", json=ACCEPT_BODY)
        assert response.status_code == 200
        assert fake.call_state("rtc_demo") == "accepted"


async def test_clean_close_is_1000(live: tuple[ClientConnection, FakeConnection]) -> None:
    ws, conn = live
    await conn.close(1000, "bye")
    assert await close_code(ws) == 1000
    assert ws.close_reason == "bye"
    with pytest.raises(ConnectionError):
        await conn.send(se.dtmf("1"))


async def test_hangup_closes_the_websocket(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient, live: tuple[ClientConnection, FakeConnection]
) -> None:
    ws, conn = live
    assert (await rest.post(f"/realtime/calls/{conn.call_id}/hangup")).status_code == 200
    assert await close_code(ws) == 1000
    await conn.wait_closed()
    assert fake_openai.hangup_observed(conn.call_id)
    assert fake_openai.call_state(conn.call_id) == "ended"


async def test_caller_hangup_drops_and_server_close_on_stop(rest: httpx.AsyncClient) -> None:
    async with FakeOpenAI() as fake:
        rest.base_url = httpx.URL(fake.base_url + "/")
        first, second = await accepted_call(fake, rest), await accepted_call(fake, rest)
        ws1, ws2 = await connect(fake, first), await connect(fake, second)
        await fake.caller_hangs_up(first)
        assert await close_code(ws1) == 1006
        assert fake.calls[first].ended_by == "caller"
        with pytest.raises(AssertionError, match="no websocket"):
            await fake.wait_connected(first, timeout=0.05)
    assert await close_code(ws2) == 1001  # stop() closes what is still open


async def test_script_a_call(live: tuple[ClientConnection, FakeConnection]) -> None:
    ws, conn = live
    await conn.send(se.function_call_turn("lookup_order", {"id": "42"}, call_id="call_9"))
    args = await recv_until(ws, "response.function_call_arguments.done")
    assert (args["name"], json.loads(args["arguments"])) == ("lookup_order", {"id": "42"})
    assert (await recv_until(ws, "response.done"))["response"]["output"][0]["call_id"] == "call_9"
    await conn.send(se.dtmf("5"))
    assert (await recv(ws)) == conn.sent[-1]


# -- builders, schemas, webhooks ------------------------------------------------------------

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


# -- the real agents SDK against the fake -----------------------------------------------------


async def test_agents_sdk_sip_model_sends_valid_events(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    """The openai-agents SIP model connects, runs a tool and a handoff; all it sends is GA-valid."""
    from agents import function_tool
    from agents.realtime import OpenAIRealtimeSIPModel, RealtimeAgent, RealtimeRunner

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Find an order."""
        return f"order {order_id} ships tomorrow"

    billing = RealtimeAgent(name="billing", instructions="You handle billing.")
    front = RealtimeAgent(
        name="front", instructions="Answer calls.", tools=[lookup_order], handoffs=[billing]
    )
    call_id = await accepted_call(fake_openai, rest)
    runner = RealtimeRunner(front, model=OpenAIRealtimeSIPModel())
    model_config: Any = {
        "call_id": call_id,
        "url": fake_openai.realtime_url(call_id),
        "api_key": "sk-test",
        "initial_model_settings": {"tracing": None},
    }
    session = await runner.run(model_config=model_config)
    events: list[Any] = []

    async def consume() -> None:
        async for event in session:
            events.append(event)

    async with session:
        consumer = asyncio.create_task(consume())
        conn = await fake_openai.wait_connected(call_id)
        update = await conn.expect("session.update")
        tools = [t["name"] for t in update["session"]["tools"]]
        assert tools == ["lookup_order", "transfer_to_billing"]

        await conn.send(se.function_call_turn("lookup_order", {"order_id": "42"}, "call_1"))
        output = await conn.expect(
            "conversation.item.create", lambda e: e["item"]["type"] == "function_call_output"
        )
        assert output["item"]["output"] == "order 42 ships tomorrow"
        await conn.expect("response.create")

        await conn.send(se.function_call_turn("transfer_to_billing", {}, "call_2"))
        await conn.expect(
            "session.update", lambda e: e["session"].get("instructions") == "You handle billing."
        )
        await conn.send(se.assistant_turn("Billing here, how can I help?"))
        await conn.send([se.speech_started(audio_start_ms=10), se.dtmf("5")])
        await conn.send(se.input_transcription_completed("item_u1", "my bill"))
        await asyncio.sleep(0.1)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    await conn.wait_closed()
    assert {"tool_end", "handoff"} <= {e.type for e in events}
    assert [e for e in events if e.type == "error"] == []
    assert fake_openai.client_schema_errors == []
