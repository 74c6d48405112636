"""The GPT-Live fake is only useful if it refuses what the Live service refuses: protocol tests
straight against it, with a plain HTTP client and a plain websocket client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from callserver.testing import live_events as le
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.live_schemas import server_event_errors

AUTH = {"Authorization": "Bearer sk-test"}
SESSION = {"type": "live", "model": "gpt-live-1", "instructions": "Hi."}
RESPONSES = {
    "type": "responses",
    "responses": {
        "model": "gpt-5-mini",
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    },
}


async def _post(fake: FakeOpenAI, session_id: str, action: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=5) as client:
        return await client.post(f"/live/sessions/{session_id}/{action}", json=body)


async def _accepted(fake: FakeOpenAI, **session: Any) -> str:
    session_id = fake.live.add_session()
    response = await _post(fake, session_id, "accept", {"session": {**SESSION, **session}})
    assert response.status_code == 200, response.text
    return session_id


def _attach_url(fake: FakeOpenAI, session_id: str, graceful: bool = True) -> str:
    query = "?graceful_close=true" if graceful else ""
    return f"ws://{fake.host}:{fake.port}/v1/live/sessions/{session_id}/attach{query}"


async def _next(ws: Any, type_: str, timeout: float = 2.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == type_:
                return event


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"session": {**SESSION, "turn_detection": {}}}, "unknown_parameter", "turn_detection"),
        ({"session": {**SESSION, "tools": []}}, "unknown_parameter", "tools"),
        (
            {"session": {**SESSION, "audio": {"format": {"type": "audio/pcmu"}}}},
            "unknown_parameter",
            "format",
        ),
        ({"session": {"type": "live"}}, "invalid_value", "'model' is a required property"),
        ({"session": {**SESSION, "type": "realtime"}}, "invalid_value", "session/type"),
        ({**SESSION}, "invalid_value", "'session' is a required property"),
    ],
)
async def test_accept_is_strict(
    fake_openai: FakeOpenAI, body: Any, code: str, fragment: str
) -> None:
    session_id = fake_openai.live.add_session()
    response = await _post(fake_openai, session_id, "accept", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and fragment in error["message"], error
    assert fake_openai.live.session(session_id).state == "ringing"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'status_code' is a required property"),
        ({"status_code": 200}, "not a SIP status in 300..699"),
        ({"status_code": 486, "reason": "busy"}, "'reason' was unexpected"),
    ],
)
async def test_reject_needs_a_sip_status(fake_openai: FakeOpenAI, body: Any, fragment: str) -> None:
    session_id = fake_openai.live.add_session()
    response = await _post(fake_openai, session_id, "reject", body)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"]


async def test_first_decision_wins_on_either_api(fake_openai: FakeOpenAI) -> None:
    session_id = fake_openai.live.add_session()
    assert (await _post(fake_openai, session_id, "reject", {"status_code": 486})).status_code == 200
    late = await _post(fake_openai, session_id, "accept", {"session": SESSION})
    assert late.status_code == 409 and late.json()["error"]["code"] == "decision_already_made"

    call_id, dual = fake_openai.add_dual_call()
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        realtime = await client.post(
            f"/realtime/calls/{call_id}/accept", json={"type": "realtime", "model": "gpt-realtime"}
        )
    assert realtime.status_code == 200
    live = await _post(fake_openai, dual, "accept", {"session": SESSION})
    assert live.json()["error"]["code"] == "decision_already_made"


async def test_attach_admission(fake_openai: FakeOpenAI) -> None:
    ringing = fake_openai.live.add_session()
    with pytest.raises(websockets.InvalidStatus) as no_key:
        await websockets.connect(_attach_url(fake_openai, ringing))
    assert no_key.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as early:
        await websockets.connect(_attach_url(fake_openai, ringing), additional_headers=AUTH)
    assert early.value.response.status_code == 400
    with pytest.raises(websockets.InvalidStatus) as unknown:
        await websockets.connect(_attach_url(fake_openai, "live_nope"), additional_headers=AUTH)
    assert unknown.value.response.status_code == 404


async def test_attach_replays_the_last_seconds_with_original_ids(fake_openai: FakeOpenAI) -> None:
    session_id = await _accepted(fake_openai, delegation=RESPONSES)
    session = fake_openai.live.session(session_id)
    old = le.usage_updated(1)
    session.log.append((0.0, old))  # long before the replay window
    await fake_openai.live.agent_says(session_id, "Hello there", parts=1)
    [recent] = [e for _, e in session.log if e["type"] == "session.output_transcript.delta"]
    async with websockets.connect(
        _attach_url(fake_openai, session_id), additional_headers=AUTH
    ) as ws:
        started = await _next(ws, "session.started")
        replayed = await _next(ws, "session.output_transcript.delta")
        assert replayed["event_id"] == recent["event_id"]  # same id: clients deduplicate by it
        assert started["session"]["id"] == session_id
        await fake_openai.live.press(session_id, "5")
        assert (await _next(ws, "transport.dtmf.received"))["event"] == "5"
    sent = [e["event_id"] for e in session.sidebands[0].sent]
    assert old["event_id"] not in sent and recent["event_id"] in sent


async def _refused(ws: Any, event: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(event))
    return (await _next(ws, "error"))["error"]


async def test_sideband_refuses_what_live_refuses(fake_openai: FakeOpenAI) -> None:
    session_id = await _accepted(fake_openai, delegation=RESPONSES)
    async with websockets.connect(
        _attach_url(fake_openai, session_id), additional_headers=AUTH
    ) as ws:
        assert (
            "already running"
            in (await _refused(ws, {"type": "session.start", "session": {}}))["message"]
        )
        audio = await _refused(ws, {"type": "session.input_audio.append", "audio": ""})
        assert "SIP leg" in audio["message"]
        unknown = await _refused(
            ws,
            {"type": "session.instructions.append", "content": "x", "delegation_id": None, "x": 1},
        )
        assert unknown["code"] == "unknown_parameter"
        missing = await _refused(ws, {"type": "session.instructions.append", "content": "x"})
        assert "delegation_id" in missing["message"]
        long = await _refused(
            ws,
            {
                "type": "session.instructions.append",
                "content": "word " * 600,
                "delegation_id": None,
            },
        )
        assert "500 tokens" in long["message"]
        not_client = await _refused(
            ws, {"type": "session.thinking.append", "content": "x", "delegation_id": "item_1"}
        )
        assert "not accepted with Responses delegation" in not_client["message"]
        immutable = await _refused(
            ws,
            {
                "type": "session.update",
                "event_id": "u1",
                "session": {"delegation": {"type": "client"}},
            },
        )
        assert (
            immutable["code"] == "immutable_field_update" and immutable["client_event_id"] == "u1"
        )
        voice = await _refused(ws, {"type": "session.update", "session": {"instructions": "new"}})
        assert voice["code"] == "unknown_parameter"
        [call_id] = await fake_openai.live.delegate(session_id, [("lookup", {"id": 1})])
        early = await _refused(ws, {"type": "response.create"})
        assert f"No tool output found for function call {call_id}" in early["message"]
        wrong = await _refused(
            ws,
            {
                "type": "response.item.create",
                "item": {"type": "function_call_output", "call_id": "call_x", "output": "o"},
            },
        )
        assert "no function call" in wrong["message"]
        await ws.send(
            json.dumps(
                {
                    "type": "response.item.create",
                    "item": {"type": "function_call_output", "call_id": call_id, "output": "ok"},
                }
            )
        )
        await ws.send(json.dumps({"type": "response.create", "event_id": "c1"}))
        created = await _next(ws, "response.event")
        while created["event"]["type"] != "response.created" or created["delegation_id"]:
            created = await _next(ws, "response.event")
        update = {"type": "responses", "responses": {"instructions": "Billing.", "tools": []}}
        await ws.send(json.dumps({"type": "session.update", "session": {"delegation": update}}))
        updated = await _next(ws, "session.updated")
        resolved = updated["session"]["delegation"]["responses"]
        assert resolved["model"] == "gpt-5-mini" and resolved["instructions"] == "Billing."
    session = fake_openai.live.session(session_id)
    assert session.outputs == {call_id: "ok"} and session.continued == [session.calls[call_id]]
    assert len(fake_openai.client_schema_errors) == 10


async def test_client_delegation_rules(fake_openai: FakeOpenAI) -> None:
    session_id = await _accepted(fake_openai)
    async with websockets.connect(
        _attach_url(fake_openai, session_id), additional_headers=AUTH
    ) as ws:
        needs = await _refused(ws, {"type": "response.create"})
        assert needs["message"] == "response.create requires Responses delegation."
        unknown = await _refused(
            ws, {"type": "session.commentary.append", "content": "x", "delegation_id": "item_x"}
        )
        assert "unknown client delegation" in unknown["message"]
        delegation_id = await fake_openai.live.delegate_to_client(session_id)
        await ws.send(
            json.dumps(
                {
                    "type": "session.commentary.append",
                    "content": "It shipped.",
                    "delegation_id": delegation_id,
                }
            )
        )
        await _next(ws, "session.commentary.appended")
    assert delegation_id in fake_openai.live.session(session_id).answered_delegations


@pytest.mark.parametrize("graceful", [True, False])
async def test_hangup_closes_the_session_then_the_socket(
    fake_openai: FakeOpenAI, graceful: bool
) -> None:
    session_id = await _accepted(fake_openai)
    url = _attach_url(fake_openai, session_id, graceful=graceful)
    async with websockets.connect(url, additional_headers=AUTH) as ws:
        assert (await _post(fake_openai, session_id, "hangup")).status_code == 200
        closed = await _next(ws, "session.closed")
        assert closed["reason"] == "close_requested" and closed["session"]["status"] == "active"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 2)
    assert (info.value.rcvd.code if info.value.rcvd else 1006) == (1000 if graceful else 1006)
    assert (await _post(fake_openai, session_id, "hangup")).status_code == 404


async def test_one_sideband_at_a_time_when_configured(fake_openai: FakeOpenAI) -> None:
    fake_openai.live.max_sidebands = 1
    session_id = await _accepted(fake_openai)
    async with websockets.connect(_attach_url(fake_openai, session_id), additional_headers=AUTH):
        async with websockets.connect(
            _attach_url(fake_openai, session_id), additional_headers=AUTH
        ) as second:
            error = await _next(second, "error")
            assert error["error"]["code"] == "sideband_limit"


async def test_stored_recording(fake_openai: FakeOpenAI) -> None:
    plain = await _accepted(fake_openai)
    stored = await _accepted(fake_openai, store=True)
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        assert (await client.get(f"/live/sessions/{plain}/content")).status_code == 400
        assert (await client.get(f"/live/sessions/{stored}/content")).status_code == 409
        await fake_openai.live.caller_hangs_up(stored)
        wav = await client.get(f"/live/sessions/{stored}/content")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    assert wav.headers["content-type"] == "audio/wav"


def test_every_builder_makes_a_valid_server_event() -> None:
    resource = le.session_resource("live_1", {"model": "gpt-live-1", "store": True})
    events = [
        le.session_started(resource),
        le.session_updated(resource, "c1"),
        le.session_closed(resource, "remote_hangup", 12),
        le.usage_updated(3),
        le.output_transcript("hi", 0, 100),
        le.input_transcript("hello", 100, 300),
        le.appended("session.instructions.append", 10, None),
        le.delegation_created("item_1", "responses", 0, "resp_1"),
        le.response_event("item_1", le.function_call_item("f", {"a": 1}, "call_1")),
        le.dtmf_received("#"),
        le.dtmf_sent("1", "c2"),
        le.error("unknown_parameter", "no", client_event_id="c3"),
    ]
    for event in events:
        assert server_event_errors(event) == [], event
    assert server_event_errors({"type": "transport.dtmf.received", "event": "5"}) != []
