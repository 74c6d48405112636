"""The fake OpenAI's Realtime websocket, through real sockets: refusals, replies, closes."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from callserver.testing import server_events as se
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import FakeConnection
from callserver.testing.schemas import server_event_errors
from tests.fake_openai_support import (
    ACCEPT_BODY,
    AUTH,
    accepted_call,
    close_code,
    connect,
    recv,
    recv_until,
)

pytest_plugins = ["tests.fake_openai_fixtures"]
"""The ``rest`` and ``live`` fixtures."""


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
