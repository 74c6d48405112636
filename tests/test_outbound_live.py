"""Outbound calls on GPT-Live, end to end through sockets: POST /admin/calls -> create ->
sideband (transport.ringing/answered/failed) -> the one end path, for every outcome."""

from __future__ import annotations

import json

from callserver.records.post_call import build_call_ended_event
from callserver.testing.fake_live_outbound import Callee
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.live_schemas import create_errors
from tests.e2e import assert_idle, wait_for
from tests.outbound_support import (
    LIVE_DIALER,
    OUTBOUND_CONFIG,
    TRUNK,
    ended,
    get,
    place,
    status_of,
)

ANA = "+14155550123"


async def test_one_call_answered_and_completed(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    live = fake_openai.live
    live.outbound.script(ANA, outcome="answer", says="Hello?")
    response = await place(server, to=ANA, graph="reminders", variables={"name": "Ana"})
    assert response.status_code == 201, response.text
    call = response.json()
    call_id = call["id"]
    assert call_id.startswith("out_") and call["status"] in ("dialing", "ringing")
    assert call["to"] == ANA and call["from"] == "+14155550100"  # the graph's caller number

    [create] = live.outbound.creates
    assert create.status == 201 and create_errors(create.body) == []
    body = create.body
    assert body["transport"]["destination"] == ANA
    trunk = body["transport"]["trunk"]
    assert trunk["provider_url"] == TRUNK["sip_trunk_url"]
    assert trunk["auth"] == {"type": "digest", "username": "trunk-user", "password": "trunk-secret-password"}
    assert trunk["caller_number"] == "+14155550100"
    session = body["session"]
    assert "type" not in session and session["model"] == "gpt-live-1"
    assert "Ana" in session["instructions"] and "soon" in session["instructions"]  # var + default

    session_id = create.session_id
    sideband = await live.wait_attached(session_id)
    assert sideband.graceful_close
    await wait_for(lambda: live.session(session_id).state == "accepted", what="answered")

    async def answered() -> bool:
        return await status_of(server, call_id) == "answered"

    await wait_for(answered, what="status answered")
    shown = (await get(server, f"/admin/calls/{call_id}")).json()
    assert shown["engine_call_id"] == session_id and shown["direction"] == "outbound"
    record = await server.services.manager.registry.get(call_id)
    await wait_for(lambda: record.outbound.get("answered_by"), what="detection window over")
    await live.caller_hangs_up(session_id)
    record = await ended(server, call_id)
    assert record.outbound["outcome"] == "completed" and record.end_reason == "caller_hangup"
    assert record.outbound["answered_by"] == "person"
    assert (await status_of(server, call_id)) == "ended"
    event = build_call_ended_event(record, redact_numbers=False)["data"]
    assert event["direction"] == "outbound" and event["outbound"]["outcome"] == "completed"
    assert event["dialed"] == ANA
    assert "trunk-secret-password" not in json.dumps(event)
    assert fake_openai.client_schema_errors == []
    await assert_idle(server)
