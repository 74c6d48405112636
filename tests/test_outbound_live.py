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
    assert trunk["auth"] == {
        "type": "digest",
        "username": "trunk-user",
        "password": "trunk-secret-password",
    }
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
    metrics, _ = server.services.metrics.exposition()
    assert b'callserver_outbound_calls_total{dialer="live",outcome="completed"} 1.0' in metrics
    await assert_idle(server)


async def _outcome(server, fake_openai, number: str, graph: str = "reminders", **script):
    fake_openai.live.outbound.script(number, **script)
    response = await place(
        server, to=number, graph=graph, variables={"name": "Bo"} if graph == "reminders" else {}
    )
    assert response.status_code == 201, response.text
    return await ended(server, response.json()["id"])


async def test_unanswered_outcomes(start_callserver, fake_openai: FakeOpenAI) -> None:
    """transport.failed ends the call with its outcome; nothing is hung up (nothing to)."""
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    cases = {
        "+14155550201": ("busy", "busy"),
        "+14155550202": ("no_answer", "no_answer"),
        "+14155550203": ("declined", "rejected"),
        "+14155550204": ("failed", "failed"),
    }
    for number, (callee, outcome) in cases.items():
        record = await _outcome(server, fake_openai, number, outcome=callee)
        assert record.outbound["outcome"] == outcome, (number, record.outbound)
        assert record.outbound["state"] == "ended" and not record.outbound.get("answered")
        assert record.end_reason in (outcome, "connection_lost")
        event = build_call_ended_event(record, redact_numbers=True)["data"]
        assert event["outbound"]["outcome"] == outcome and event["dialed"] is None
    for number in cases:
        assert len(fake_openai.live.outbound.dialed(number)) == 1  # never retried
    metrics = server.services.metrics.exposition()[0].decode()
    assert 'outcome="unanswered"' in metrics and 'outcome="rejected"' in metrics
    await assert_idle(server)


async def test_ring_timeout_hangs_up(start_callserver, fake_openai: FakeOpenAI) -> None:
    """No answer within the graph's ring timeout: hung up, outcome no_answer."""
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    fake_openai.live.outbound.script("+14155550205", ring_s=30)
    response = await place(server, to="+14155550205", graph="survey")
    call_id = response.json()["id"]
    record = await ended(server, call_id, timeout=5)  # the survey graph rings for 1 s
    assert record.outbound["outcome"] == "no_answer" and record.end_reason == "no_answer"
    session_id = fake_openai.live.outbound.creates[0].session_id
    assert fake_openai.requests_for(session_id, "hangup")  # ours to end: hung up
    await assert_idle(server)


async def test_voicemail_hangup(start_callserver, fake_openai: FakeOpenAI) -> None:
    """A voicemail greeting in the first seconds: the survey graph hangs up (the default)."""
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    record = await _outcome(
        server, fake_openai, "+14155550206", graph="survey", outcome="voicemail"
    )
    assert record.outbound["outcome"] == "voicemail"
    assert record.outbound["answered_by"] == "voicemail"
    session_id = fake_openai.live.outbound.creates[0].session_id
    assert fake_openai.requests_for(session_id, "hangup")
    assert record.end_reason == "voicemail"
    await assert_idle(server)


async def test_voicemail_leave_message(start_callserver, fake_openai: FakeOpenAI) -> None:
    """leave_message: the agent is told to say the message once; after that turn, hang up."""
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    live = fake_openai.live
    live.outbound.script("+14155550207", outcome="voicemail")
    response = await place(
        server,
        to="+14155550207",
        graph="reminders",
        variables={"name": "Cy", "appointment": "Monday 9am"},
    )
    call_id = response.json()["id"]
    session_id = live.outbound.creates[0].session_id
    sideband = await live.wait_attached(session_id)
    told = await sideband.expect(
        "session.instructions.append", lambda e: "voicemail" in e["content"]
    )
    assert "Hi Cy, this is Example Clinic: your appointment is Monday 9am" in told["content"]
    await live.agent_says(session_id, "Hi Cy, this is Example Clinic. Please call us back.")
    record = await ended(server, call_id)
    assert record.outbound["outcome"] == "voicemail" and record.end_reason == "voicemail"
    assert fake_openai.requests_for(session_id, "hangup")
    assert len(sideband.of_type("session.instructions.append")) == 1  # spoken once
    await assert_idle(server)


async def test_call_screening_is_a_machine(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    record = await _outcome(
        server, fake_openai, "+14155550208", graph="survey", outcome="screening"
    )
    assert record.outbound["outcome"] == "voicemail"
    assert record.outbound["answered_by"] == "screening"
    await assert_idle(server)


async def test_outbound_not_enabled_is_one_clear_error(
    start_callserver, fake_openai: FakeOpenAI, caplog
) -> None:
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    fake_openai.live.outbound.enabled = False
    for _ in range(2):
        response = await place(server, to=ANA, graph="survey")
        assert response.status_code == 502
        body = response.json()
        assert "outbound_sip_not_enabled" in body["error"]
        assert body["call"]["outcome"] == "rejected" and body["call"]["status"] == "ended"
    errors = [r for r in caplog.records if "outbound_sip_not_enabled" in r.getMessage()]
    assert len([r for r in errors if r.levelname == "ERROR"]) == 1  # once, not per call
    assert len(fake_openai.live.outbound.creates) == 2
    await assert_idle(server)


async def test_ambiguous_create_is_never_retried(start_callserver, fake_openai: FakeOpenAI) -> None:
    """A 504 may have placed the call: exactly one create, outcome unknown, 502 to the client."""
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    fake_openai.live.outbound.fail_create(504, places_call=True)
    response = await place(server, to="+14155550209", graph="survey")
    assert response.status_code == 502
    call = response.json()["call"]
    assert call["outcome"] == "unknown" and "not retried" in call["error"]
    assert len(fake_openai.live.outbound.creates) == 1
    fake_openai.live.outbound.fail_create(502, places_call=False)
    response = await place(server, to="+14155550210", graph="survey")
    assert response.json()["call"]["outcome"] == "unknown"
    assert len(fake_openai.live.outbound.creates) == 2
    await assert_idle(server)


async def test_create_timeout_is_unknown(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(OUTBOUND_CONFIG, outbound_create_timeout_s=0.3, **LIVE_DIALER)
    fake_openai.live.outbound.delay_s = 1.0
    response = await place(server, to="+14155550211", graph="survey")
    assert response.status_code == 502
    assert response.json()["call"]["outcome"] == "unknown"
    # The create went on after we gave up: the call rang, and nobody retried it.
    await wait_for(lambda: fake_openai.live.outbound.creates[0].placed, timeout=3)
    assert len(fake_openai.live.outbound.creates) == 1
    await assert_idle(server)


BAD_REQUESTS = [
    ({"to": "4155550123", "graph": "reminders", "variables": {"name": "A"}}, "to"),
    ({"to": "+04155550123", "graph": "reminders", "variables": {"name": "A"}}, "to"),
    ({"to": "+1415555012345678", "graph": "reminders", "variables": {"name": "A"}}, "to"),
    ({"to": "sip:ana@example.com", "graph": "reminders", "variables": {"name": "A"}}, "to"),
    ({"graph": "reminders", "variables": {"name": "A"}}, "to"),
    ({"to": ANA, "graph": "remindrs", "variables": {"name": "A"}}, "graph"),
    ({"to": ANA, "graph": "reminders"}, "variables.name"),
    ({"to": ANA, "graph": "reminders", "variables": {"name": "A", "nmae": "B"}}, "variables.nmae"),
    ({"to": ANA, "graph": "reminders", "variables": {"name": "A"}, "from": "123"}, "from"),
    ({"to": ANA, "graph": "reminders", "variables": {"name": "A"}, "dialer": "fax"}, "dialer"),
    ({"to": ANA, "graph": "reminders", "variables": {"name": "A"}, "dialer": "twilio"}, "dialer"),
    ({"to": ANA, "graph": "followup", "variables": {"name": "A"}}, "dialer"),
    ({"to": ANA, "graf": "reminders"}, "graf"),
    ([], "body"),
]


async def test_bad_requests_dial_nothing(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(OUTBOUND_CONFIG, **LIVE_DIALER)
    for body, field in BAD_REQUESTS:
        response = await place(server, **body) if isinstance(body, dict) else None
        if response is None:
            from tests.outbound_support import post

            response = await post(server, "/admin/calls", body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    assert fake_openai.live.outbound.creates == []
    missing = (await place(server, to=ANA, graph="reminders")).json()
    assert "required by graph 'reminders' (First name of the patient)" in missing["error"]
    assert (
        "did you mean 'name'"
        in (
            await place(server, to=ANA, graph="reminders", variables={"name": "A", "nmae": "B"})
        ).json()["error"]
    )


async def test_admin_token_and_dnc(start_callserver, fake_openai: FakeOpenAI, tmp_path) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("# do not call\n+1 (415) 555-0123\n")
    server = await start_callserver(OUTBOUND_CONFIG, dnc_path=dnc, **LIVE_DIALER)
    import httpx

    async with httpx.AsyncClient() as client:
        unauthorized = await client.post(server.url + "/admin/calls", json={"to": ANA})
    assert unauthorized.status_code == 401
    response = await place(server, to=ANA, graph="reminders", variables={"name": "A"})
    assert response.status_code == 409 and response.json()["field"] == "to"
    assert fake_openai.live.outbound.creates == []


async def test_inbound_share_caps_outbound(start_callserver, fake_openai: FakeOpenAI) -> None:
    """CALLSERVER_MAX_CALLS=2 with half kept for inbound: the second outbound call waits."""
    server = await start_callserver(
        OUTBOUND_CONFIG, max_concurrent_calls=2, inbound_share=0.5, **LIVE_DIALER
    )
    fake_openai.live.outbound.default = Callee(ring_s=0.05)
    first = await place(server, to="+14155550212", graph="survey")
    assert first.status_code == 201
    second = await place(server, to="+14155550213", graph="survey")
    assert second.status_code == 503 and second.json()["reason"] == "capacity"
    assert len(fake_openai.live.outbound.creates) == 1
    session_id = fake_openai.live.outbound.creates[0].session_id
    await fake_openai.live.wait_attached(session_id)
    await wait_for(lambda: fake_openai.live.session(session_id).state == "accepted")
    await fake_openai.live.caller_hangs_up(session_id)
    await ended(server, first.json()["id"])
    await wait_for(lambda: server.services.outbound.has_room(), what="room again")
    third = await place(server, to="+14155550213", graph="survey")
    assert third.status_code == 201
    await fake_openai.live.wait_attached(fake_openai.live.outbound.creates[1].session_id)
