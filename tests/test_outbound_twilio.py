"""Outbound calls through Twilio, end to end through sockets: POST /admin/calls -> Twilio's
Calls API (fake) -> status callbacks and the answer TwiML -> the bridged leg's OpenAI webhook,
matched by the signed correlation header -> accept -> the one end path."""

from __future__ import annotations

from callserver.outbound.correlation import HEADER
from callserver.records.post_call import build_call_ended_event
from callserver.testing import harness
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_twilio_api import FakeTwilio
from callserver.testing.fake_twilio_calls import sip_of as _sip_of
from callserver.testing.fake_twilio_calls import uri_headers as _uri_headers
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port, run_callserver
from callserver.testing.webhook_sender import incoming_call_event, send_webhook
from tests.e2e import assert_idle, wait_for
from tests.outbound_support import (
    ADMIN_TOKEN,
    OUTBOUND_CONFIG,
    SIGNING_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    ended,
    place,
    status_of,
    twilio_callserver,
)

BO = "+14155550301"


async def test_twilio_call_bridged_and_completed(fake_openai: FakeOpenAI) -> None:
    async with twilio_callserver(fake_openai) as (server, twilio):
        twilio.script(BO, outcome="answer", says="Hello, who is this?", hangs_up_after=1.5)
        response = await place(server, to=BO, graph="followup", variables={"name": "Bo"})
        assert response.status_code == 201, response.text
        call = response.json()
        assert call["dialer"] == "twilio" and call["from"] == "+14155550177"
        call_id = call["id"]
        [order] = twilio.creates
        fields = dict(order["fields"])
        assert fields["To"] == BO and fields["From"] == "+14155550177"
        assert fields["Url"].startswith(server.url + "/twilio/outbound/answer?attempt=" + call_id)
        assert "MachineDetection" not in fields
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.bridged is not None, what="bridged to OpenAI")
        engine, rtc_id = placed.bridged
        assert engine == "realtime"
        conn = await fake_openai.wait_connected(rtc_id)
        [accept] = fake_openai.requests_for(rtc_id, "accept")
        assert "Bo" in accept.json["instructions"]  # the outbound graph, with its variables

        async def answered() -> bool:
            return await status_of(server, call_id) == "answered"

        await wait_for(answered, what="answered")
        record = await ended(server, call_id, timeout=10)
        assert record.outbound["outcome"] == "completed"
        assert record.engine_ref == rtc_id and record.twilio_call_sid == placed.sid
        assert placed.callbacks[:2] == ["initiated", "ringing"] and placed.status == "completed"
        assert conn.received  # the agent's session ran on the bridged leg
        event = build_call_ended_event(record, redact_numbers=False)["data"]
        assert (
            event["outbound"]["dialer"] == "twilio"
            and event["outbound"]["twilio_call_sid"] == placed.sid
        )
        await assert_idle(server)


async def test_twilio_unanswered_outcomes(fake_openai: FakeOpenAI) -> None:
    async with twilio_callserver(fake_openai) as (server, twilio):
        cases = {"+14155550302": "busy", "+14155550303": "no-answer", "+14155550304": "failed"}
        expected = {"busy": "busy", "no-answer": "no_answer", "failed": "failed"}
        for number, outcome in cases.items():
            twilio.script(number, outcome=outcome)
            response = await place(server, to=number, graph="followup", variables={"name": "X"})
            record = await ended(server, response.json()["id"])
            assert record.outbound["outcome"] == expected[outcome], record.outbound
            assert record.end_reason == f"twilio:{outcome}"
            assert len(twilio.dialed(number)) == 1
        assert fake_openai.calls == {}  # nothing ever reached OpenAI
        await assert_idle(server)


async def test_machine_detection_hangs_up(fake_openai: FakeOpenAI) -> None:
    """Twilio's AMD says machine and the graph says hangup: <Hangup/>, never bridged."""
    async with twilio_callserver(fake_openai, twilio_machine_detection=True) as (server, twilio):
        twilio.script("+14155550305", outcome="machine")
        response = await place(server, to="+14155550305", graph="survey", dialer="twilio")
        record = await ended(server, response.json()["id"])
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.status == "completed", what="twilio call over")
        assert dict(twilio.creates[0]["fields"])["MachineDetection"] == "Enable"
        assert "<Hangup" in placed.twiml and placed.bridged is None
        assert record.outbound["outcome"] == "voicemail"
        await assert_idle(server)


async def test_machine_detection_leaves_a_message(fake_openai: FakeOpenAI) -> None:
    """AMD on a leave_message graph: Twilio waits for the beep, the leg is bridged, and the
    agent is told to leave the message at once (answered_by from Twilio)."""
    async with twilio_callserver(fake_openai, twilio_machine_detection=True) as (server, twilio):
        twilio.script("+14155550306", outcome="machine")
        response = await place(
            server, to="+14155550306", graph="followup", variables={"name": "Di"}
        )
        call_id = response.json()["id"]
        assert dict(twilio.creates[0]["fields"])["MachineDetection"] == "DetectMessageEnd"
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.bridged is not None, what="bridged")
        conn = await fake_openai.wait_connected(placed.bridged[1])
        said = await conn.expect(
            "response.create",
            lambda e: "voicemail" in str((e.get("response") or {}).get("instructions")),
        )
        assert "Hi Di, Example Corp here" in said["response"]["instructions"]
        record = await server.services.manager.registry.get(call_id)
        assert record.outbound["answered_by"] == "voicemail"
        await fake_openai.caller_hangs_up(placed.bridged[1])
        record = await ended(server, call_id)
        assert record.outbound["outcome"] == "voicemail"
        await assert_idle(server)


async def test_transcript_detection_on_a_bridged_call(fake_openai: FakeOpenAI) -> None:
    """Without AMD, the callee's first words tell: a voicemail greeting -> leave the message."""
    async with twilio_callserver(fake_openai) as (server, twilio):
        twilio.script("+14155550307", outcome="machine")
        response = await place(
            server, to="+14155550307", graph="followup", variables={"name": "Ed"}
        )
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.bridged is not None, what="bridged")
        conn = await fake_openai.wait_connected(placed.bridged[1])
        await conn.expect(
            "response.create",
            lambda e: "voicemail" in str((e.get("response") or {}).get("instructions")),
        )
        record = await server.services.manager.registry.get(response.json()["id"])
        assert record.outbound["answered_by"] == "voicemail"
        await fake_openai.caller_hangs_up(placed.bridged[1])
        await ended(server, record.call_id)
        await assert_idle(server)


async def test_forged_and_replayed_headers_are_refused(fake_openai: FakeOpenAI) -> None:
    async with twilio_callserver(fake_openai) as (server, twilio):
        # Forged: a caller adds the header to an INVITE of their own.
        forged = fake_openai.add_call()
        event = incoming_call_event(
            forged, extra_headers=[(HEADER, "out_aaaaaaaaaaaaaaaa.realtime..9999999999.AAAA")]
        )
        response = await send_webhook(server.webhook_url, TEST_WEBHOOK_SECRET, event)
        assert response.json()["status"] == "refused"
        await wait_for(lambda: fake_openai.calls[forged].reject_status == 603, what="rejected")

        # Replayed: a real bridge's header on a second call.
        twilio.script(BO, outcome="answer", hangs_up_after=0.5)
        placed_response = await place(server, to=BO, graph="followup", variables={"name": "Bo"})
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.bridged is not None, what="bridged")
        header = dict(_uri_headers(_sip_of(placed.twiml)))[HEADER]
        replay = fake_openai.add_call()
        event = incoming_call_event(replay, extra_headers=[(HEADER, header)])
        response = await send_webhook(server.webhook_url, TEST_WEBHOOK_SECRET, event)
        assert response.json()["status"] == "refused"
        await wait_for(lambda: fake_openai.calls[replay].reject_status == 603, what="rejected")
        record = await ended(server, placed_response.json()["id"])
        assert record.outbound["outcome"] == "completed"
        await assert_idle(server)


async def test_twilio_refusal_and_unknown(fake_openai: FakeOpenAI) -> None:
    async with twilio_callserver(fake_openai) as (server, twilio):
        twilio.fail_create(500, places_call=True)
        response = await place(server, to="+14155550308", graph="followup", variables={"name": "F"})
        assert response.status_code == 502
        assert response.json()["call"]["outcome"] == "unknown"
        assert len(twilio.creates) == 1  # never retried
        twilio.fail_create(400, places_call=False)
        response = await place(server, to="+14155550309", graph="followup", variables={"name": "G"})
        assert response.status_code == 502 and response.json()["call"]["outcome"] == "failed"
        assert len(twilio.creates) == 2
        await assert_idle(server)


async def test_live_graph_through_twilio(fake_openai: FakeOpenAI) -> None:
    """A Live graph may be dialed by Twilio too: the bridged leg arrives as live.* and the
    Realtime twin of a dual announcement is left alone."""
    async with twilio_callserver(fake_openai, engines=("realtime", "live")) as (server, twilio):
        twilio.script("+14155550310", outcome="answer", hangs_up_after=0.3)
        response = await place(server, to="+14155550310", graph="survey", dialer="twilio")
        [placed] = twilio.calls.values()
        await wait_for(lambda: placed.bridged is not None, what="bridged")
        assert placed.bridged[0] == "live"
        record = await ended(server, response.json()["id"])
        assert record.outbound["outcome"] == "completed"
        await assert_idle(server)


async def test_bridge_lands_on_another_instance(
    fake_openai: FakeOpenAI, redis_url: str, redis_prefix: str
) -> None:
    """Two instances share Redis; Twilio and OpenAI reach the one that did not dial (as a
    load balancer may do). The leg is handed to the dialing instance, which accepts it; the
    final status lands on the other one too and is routed to the owner."""
    port_a, port_b = free_port(), free_port()
    public_b = f"http://127.0.0.1:{port_b}"
    shared = {"redis_url": redis_url, "redis_key_prefix": redis_prefix, "redis_lease_s": 2.0}
    async with FakeTwilio(
        account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN, openai=fake_openai,
        webhook_url=f"{public_b}/webhooks/openai",
    ) as twilio:  # fmt: skip
        common = {
            "admin_token": ADMIN_TOKEN,
            "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_api_url": twilio.base_url,
            "twilio_from": "+14155550177",
            "public_base_url": public_b,
            "outbound_signing_key": SIGNING_KEY,
            "openai_project_id": "proj_test123",
            **shared,
        }
        base = fake_openai.base_url
        a_settings = harness.test_settings(base, OUTBOUND_CONFIG, instance_id="a", **common)
        b_settings = harness.test_settings(base, OUTBOUND_CONFIG, instance_id="b", **common)
        async with (
            run_callserver(a_settings, port=port_a) as a,
            run_callserver(b_settings, port=port_b) as b,
        ):
            twilio.script(BO, outcome="answer", hangs_up_after=0.5)
            response = await place(a, to=BO, graph="followup", variables={"name": "Bo"})
            assert response.status_code == 201, response.text
            call_id = response.json()["id"]
            [placed] = twilio.calls.values()
            await wait_for(lambda: placed.bridged is not None, what="bridged", timeout=10)
            rtc_id = placed.bridged[1]
            await fake_openai.wait_connected(rtc_id)
            record = await ended(a, call_id, timeout=10)
            assert record.engine_ref == rtc_id and record.outbound["outcome"] == "completed"
            assert b.services.manager.registry.is_local(call_id) is False
            await assert_idle(a)
            await assert_idle(b)


async def test_answer_during_a_drain_is_taken(fake_openai: FakeOpenAI) -> None:
    """A drain refuses new calls (503), but the answered leg of a call we placed is ours:
    it is bridged and runs to its end like the calls the drain lets finish."""
    async with twilio_callserver(fake_openai, drain_timeout_s=5.0) as (server, twilio):
        twilio.script(BO, outcome="answer", ring_s=0.3, hangs_up_after=0.3)
        response = await place(server, to=BO, graph="followup", variables={"name": "Bo"})
        call_id = response.json()["id"]
        server.services.manager.begin_drain()
        late = await place(server, to="+14155550399", graph="followup", variables={"name": "X"})
        assert late.status_code == 503 and late.json()["reason"] == "draining"
        record = await ended(server, call_id, timeout=10)
        assert record.outbound["outcome"] == "completed" and record.engine_ref is not None
