"""The spine end to end, on real sockets: signed webhook -> accept -> session -> hangup."""

from __future__ import annotations

import asyncio
import json
import time

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer
from tests.conftest import ROOT
from tests.e2e import assert_idle, ended_record, place_call, wait_for


def _session_update_with(text: str):
    return lambda e: text in (e.get("session", {}).get("instructions") or "")


async def test_whole_call(callserver: RunningServer, fake_openai: FakeOpenAI) -> None:
    call_id, response = await place_call(callserver, fake_openai)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "started", "call_id": call_id}

    # Accept with a full, strictly valid session config from the starting agent.
    await wait_for(lambda: fake_openai.requests_for(call_id, "accept"), what="accept")
    accept = fake_openai.requests_for(call_id, "accept")[0]
    assert accept.status == 200
    assert fake_openai.rest_schema_errors == []
    body = accept.json
    assert body["type"] == "realtime" and body["model"] == "gpt-realtime"
    assert "front desk" in body["instructions"].lower() or body["instructions"]
    assert body["audio"]["output"]["voice"] == "marin"
    assert "format" not in body["audio"]["input"]  # SIP: formats come from SDP
    tool_names = {t["name"] for t in body["tools"]}
    assert {"get_weather", "book_appointment", "end_call"} <= tool_names
    assert {"transfer_to_billing_support", "transfer_to_technical_support"} <= tool_names

    # The control websocket carries that call_id and the same session settings.
    conn = await fake_openai.wait_connected(call_id)
    assert conn.call_id == call_id
    update = await conn.expect("session.update")
    session = update["session"]
    assert session["instructions"] == body["instructions"]
    assert session["audio"]["output"]["voice"] == body["audio"]["output"]["voice"]
    assert {t["name"] for t in session["tools"]} == tool_names
    assert session["model"] == body["model"]
    assert "tracing" not in session or session["tracing"] is None

    # Greeting: the agent speaks first.
    greet = await conn.expect("response.create")
    assert "Thanks for calling" in greet["response"]["instructions"]

    # A function call runs the configured tool; its output goes back, then a new response.
    await conn.send(ev.function_call_turn("get_weather", {"city": "Paris"}, call_id="fc_1"))
    output = await conn.expect(
        "conversation.item.create",
        lambda e: e["item"].get("type") == "function_call_output",
    )
    assert output["item"]["call_id"] == "fc_1"
    assert "Paris" in output["item"]["output"]
    await conn.expect("response.create")

    # A handoff switches agents: session.update with Billing Support's instructions.
    await conn.send(ev.function_call_turn("transfer_to_billing_support", {}, call_id="fc_2"))
    update = await conn.expect("session.update", _session_update_with("billing"))
    billing_tools = {t["name"] for t in update["session"]["tools"]}
    assert "transfer_to_customer_service" in billing_tools
    await wait_for(
        lambda: (
            callserver.services.manager.session(call_id) is not None
            and _current_agent(callserver, call_id) == "Billing Support"
        ),
        what="billing agent",
    )

    # The caller hangs up: the call ends and its websocket drops (no close frame, 1006).
    started = time.monotonic()
    await fake_openai.caller_hangs_up(call_id)
    record = await ended_record(callserver, call_id)
    assert time.monotonic() - started < 1.0
    assert record.end_reason == "caller_hangup"
    assert record.agents_visited == ["Customer Service", "Billing Support"]
    assert [t.name for t in record.tool_calls][:1] == ["get_weather"]
    assert record.tool_calls[0].outcome == "ok"
    assert record.handoffs == 1
    assert not fake_openai.hangup_observed(call_id)  # the caller left; nothing to hang up
    await assert_idle(callserver)
    assert fake_openai.client_schema_errors == []


def _current_agent(server: RunningServer, call_id: str) -> str | None:
    record = server.services.manager.registry._calls.get(call_id)  # type: ignore[attr-defined]
    return record.current_agent if record else None


async def test_clean_close_also_ends_the_call(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await fake_openai.caller_hangs_up(call_id, clean=True)  # the call ends, close frame 1000
    record = await ended_record(callserver, call_id)
    assert record.end_reason == "caller_hangup"
    await assert_idle(callserver)


async def test_hangup_during_running_tool_cancels_it(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """A tool is mid-flight when the caller hangs up: it is cancelled and awaited."""
    from tests import call_tools

    server = await start_callserver(ROOT / "tests" / "configs" / "slow_tool.yaml")
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    cancelled_before = call_tools.CANCELLED
    await conn.send(ev.function_call_turn("slow_lookup", {"order_id": "A1"}, call_id="fc_s"))
    await wait_for(lambda: call_tools.RUNNING > 0, what="tool running")
    await fake_openai.caller_hangs_up(call_id)
    record = await ended_record(server, call_id)
    assert record.end_reason == "caller_hangup"
    assert call_tools.RUNNING == 0
    assert call_tools.CANCELLED == cancelled_before + 1
    await assert_idle(server)


async def test_output_guardrail_trips_and_cancels(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.expect("response.create")  # the greeting, answered by the fake at once
    await asyncio.sleep(0.1)  # let that auto-reply finish before our scripted response
    text = "Sure. " + "Your account password is hunter2, " * 6
    await conn.send(ev.assistant_turn(text)[:-2])  # leave the response in progress
    await conn.expect("response.cancel", timeout=5)
    await wait_for(
        lambda: callserver.services.manager.registry._calls[call_id].guardrail_trips > 0,  # type: ignore[attr-defined]
        what="guardrail trip recorded",
    )
    await fake_openai.caller_hangs_up(call_id)
    await ended_record(callserver, call_id)


async def test_end_call_tool_hangs_up_after_goodbye(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.expect("response.create")  # greeting
    fake_openai_auto = conn  # the fake answers response.create with a finished response
    await conn.send(ev.function_call_turn("end_call", {}, call_id="fc_end"))
    await conn.expect("conversation.item.create", lambda e: e["item"].get("call_id") == "fc_end")
    await fake_openai_auto.expect("response.create")  # the goodbye
    record = await ended_record(callserver, call_id)
    assert record.end_reason == "agent_end_call"
    assert fake_openai.hangup_observed(call_id)
    # The hangup came after the goodbye response was created and finished.
    assert fake_openai.call_state(call_id) == "ended"
    await assert_idle(callserver)


async def test_max_duration_hangs_up(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(max_call_duration_s=0.5)
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    record = await ended_record(server, call_id, timeout=5)
    assert record.end_reason == "max_duration"
    assert fake_openai.hangup_observed(call_id)
    await conn.wait_closed()
    await assert_idle(server)


async def test_hangup_404_counts_as_done(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(max_call_duration_s=0.5)
    fake_openai.fail("hangup", status=404, times=1)
    call_id, _ = await place_call(server, fake_openai)
    await fake_openai.wait_connected(call_id)
    record = await ended_record(server, call_id)
    assert record.end_reason == "max_duration"
    assert [r.status for r in fake_openai.requests_for(call_id, "hangup")] == [404]
    await assert_idle(server)


async def test_accept_retries_transient_failures(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail("accept", status=500, times=1)
    fake_openai.fail("accept", status=429, times=1)
    call_id, _ = await place_call(callserver, fake_openai)
    await fake_openai.wait_connected(call_id)
    statuses = [r.status for r in fake_openai.requests_for(call_id, "accept")]
    assert statuses == [500, 429, 200]


async def test_accept_404_means_caller_gone(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail("accept", status=404, times=1)
    call_id, _ = await place_call(callserver, fake_openai)
    record = await ended_record(callserver, call_id)
    assert record.end_reason == "caller_gone"
    assert len(fake_openai.requests_for(call_id, "accept")) == 1
    assert fake_openai.requests_for(call_id, "realtime") == []
    await assert_idle(callserver)


async def test_accept_4xx_is_not_retried(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail("accept", status=400, times=1)
    call_id, _ = await place_call(callserver, fake_openai)
    record = await ended_record(callserver, call_id)
    assert record.end_reason == "accept_failed"
    assert len(fake_openai.requests_for(call_id, "accept")) == 1
    await assert_idle(callserver)


async def test_accept_gives_up_at_ring_deadline(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(ring_deadline_s=0.6, http_timeout_s=0.2)
    fake_openai.fail("accept", status=503, times=1000)
    call_id, _ = await place_call(server, fake_openai)
    started = time.monotonic()
    record = await ended_record(server, call_id)
    assert record.end_reason == "accept_failed"
    assert time.monotonic() - started < 1.5
    assert len(fake_openai.requests_for(call_id, "accept")) >= 2


async def test_connect_timeout_retried(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(ring_deadline_s=3, http_timeout_s=0.2)
    fake_openai.delay("accept", 0.5, times=1)
    call_id, _ = await place_call(server, fake_openai)
    await fake_openai.wait_connected(call_id)
    assert len(fake_openai.requests_for(call_id, "accept")) >= 2


async def test_over_capacity_rejected_486(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(max_concurrent_calls=1)
    first, _ = await place_call(server, fake_openai)
    await fake_openai.wait_connected(first)
    second, response = await place_call(server, fake_openai)
    assert response.status_code == 200
    record = await ended_record(server, second)
    assert record.end_reason == "rejected:capacity"
    rejects = fake_openai.requests_for(second, "reject")
    assert [r.json for r in rejects] == [{"status_code": 486}]
    assert fake_openai.requests_for(second, "accept") == []


async def test_duplicate_webhook_ids_accept_once(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    import httpx

    from callserver.testing.harness import TEST_WEBHOOK_SECRET
    from callserver.testing.webhook_sender import incoming_call_event, send_webhook

    call_id = fake_openai.add_call()
    event = incoming_call_event(call_id)
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(
            *(
                send_webhook(
                    callserver.webhook_url,
                    TEST_WEBHOOK_SECRET,
                    event,
                    msg_id="wh_same",
                    client=client,
                )
                for _ in range(50)
            )
        )
        # Same call, new delivery ids (OpenAI retried after a timeout): still one accept.
        more = await asyncio.gather(
            *(
                send_webhook(callserver.webhook_url, TEST_WEBHOOK_SECRET, event, client=client)
                for _ in range(10)
            )
        )
    assert all(r.status_code == 200 for r in responses + more)
    statuses = sorted(r.json()["status"] for r in responses + more)
    assert statuses.count("started") == 1 and statuses.count("duplicate") == 59
    await fake_openai.wait_connected(call_id)
    await asyncio.sleep(0.1)
    assert len(fake_openai.requests_for(call_id, "accept")) == 1


async def test_drain_refuses_new_calls_then_hangs_up(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(drain_timeout_s=0.5)
    call_id, _ = await place_call(server, fake_openai)
    await fake_openai.wait_connected(call_id)
    manager = server.services.manager
    drain = asyncio.create_task(manager.drain(0.5))
    await wait_for(lambda: manager.draining, what="draining")
    late, response = await place_call(server, fake_openai)
    assert response.status_code == 503
    assert response.json() == {"error": "draining: not taking new calls"}
    assert response.headers["retry-after"] == "5"
    import httpx

    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{server.url}/readyz")
    assert ready.status_code == 503 and ready.json()["reasons"] == ["draining"]
    await drain
    record = await ended_record(server, call_id)
    assert record.end_reason == "shutdown"
    assert fake_openai.hangup_observed(call_id)
    assert fake_openai.requests_for(late, "accept") == []
    await assert_idle(server)


async def test_every_client_event_validates(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    """A busier call: transcripts, barge-in, errors. Everything we send must validate."""
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.send(ev.speech_started())
    await conn.send(ev.speech_stopped())
    await conn.send(ev.input_transcription_completed(None, "What's the weather in Oslo?"))
    await conn.send(ev.function_call_turn("get_weather", json.dumps({"city": "Oslo"})))
    await conn.expect("response.create")
    await conn.send(ev.assistant_turn("It is sunny in Oslo."))
    await conn.send(ev.error("invalid_value", "something minor"))
    await conn.send(ev.function_call_turn("transfer_to_technical_support", {}))
    await conn.expect("session.update", _session_update_with("technical"))
    await fake_openai.caller_hangs_up(call_id)
    record = await ended_record(callserver, call_id)
    assert "invalid_value" in record.errors
    assert record.usage.get("total_tokens", 0) > 0
    assert fake_openai.client_schema_errors == []
