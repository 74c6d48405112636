"""GPT-Live calls end to end on real sockets: signed webhook -> accept -> sideband -> the end."""

from __future__ import annotations

import json
import time

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.live_schemas import accept_errors
from tests.conftest import ROOT
from tests.e2e import assert_idle, ended_record, place_live_call, wait_for

FRONTDESK_LIVE = ROOT / "config" / "frontdesk_live.yaml"
LIVE_DESK = ROOT / "tests" / "configs" / "live_desk.yaml"


def _tool_names(delegation: dict) -> set[str]:
    return {t["name"] for t in delegation["responses"].get("tools", [])}


def _output_for(call_id: str):
    return lambda e: (
        e["item"].get("type") == "function_call_output" and e["item"]["call_id"] == call_id
    )


async def test_front_desk_on_live(start_callserver, fake_openai: FakeOpenAI) -> None:
    """The bundled front desk as a Live graph, from the webhook to session.closed."""
    server = await start_callserver(FRONTDESK_LIVE)
    live = fake_openai.live
    session_id, response = await place_live_call(server, fake_openai, from_="+14255550100")
    assert response.status_code == 200 and response.json()["status"] == "started"

    # The accept: strictly valid, built from the graph (instructions rendered, the voice, the
    # starting agent's tools and one transfer_to_* per handoff under Responses delegation).
    sideband = await live.wait_attached(session_id)
    [accept] = fake_openai.requests_for(session_id, "accept")
    assert accept.status == 200 and accept.path.endswith(f"/live/sessions/{session_id}/accept")
    body = accept.json
    assert accept_errors(body) == [] and fake_openai.rest_schema_errors == []
    session = body["session"]
    assert session["type"] == "live" and session["model"] == "gpt-live-1"
    assert "+14255550100" in session["instructions"]
    assert "Thanks for calling" in session["instructions"]  # the greeting opens the call
    assert session["audio"] == {"output": {"voice": "marin"}}  # never audio.format on SIP
    delegation = session["delegation"]
    assert delegation["type"] == "responses"
    assert delegation["responses"]["model"] == "gpt-5-mini"
    assert delegation["responses"]["reasoning"] == {"effort": "low"}
    assert _tool_names(delegation) == {
        "get_weather",
        "book_appointment",
        "end_call",
        "transfer_to_billing_support",
        "transfer_to_technical_support",
    }
    assert "store" not in session
    attach = fake_openai.requests_for(session_id, "attach")[0]
    assert attach.headers["authorization"].startswith("Bearer ")
    assert sideband.graceful_close

    # A delegated tool call runs the graph's tool; its output, then one response.create.
    [weather] = await live.delegate(session_id, [("get_weather", {"city": "Paris"})])
    output = await sideband.expect("response.item.create", _output_for(weather))
    assert "Paris is sunny" in output["item"]["output"]
    await sideband.expect("response.create")
    await live.agent_says(session_id, "It is sunny in Paris today.")

    # A handoff: the delegation switches to Billing Support's prompt and tools, and the
    # voice model is told who it now is.
    [handoff] = await live.delegate(session_id, [("transfer_to_billing_support", {})])
    update = await sideband.expect("session.update")
    billing = update["session"]["delegation"]
    assert billing["type"] == "responses" and "billing" in billing["responses"]["instructions"]
    assert _tool_names(billing) == {"end_call", "transfer_to_customer_service"}
    told = await sideband.expect("session.instructions.append")
    assert told["delegation_id"] is None and "You are now Billing Support" in told["content"]
    await sideband.expect("response.item.create", _output_for(handoff))
    await sideband.expect("response.create")
    assert live.session(session_id).config["delegation"]["responses"]["model"] == "gpt-5-mini"

    # An output guardrail trips on what the agent says: Live is told to stop.
    await live.agent_says(
        session_id,
        "Before we go on I will need your account password so that I can look at the "
        "billing history of your account for you.",
        parts=3,
    )
    stop = await sideband.expect(
        "session.instructions.append", lambda e: "Stop speaking" in e["content"]
    )
    assert stop["delegation_id"] is None
    feedback = await sideband.expect(
        "response.item.create", lambda e: e["item"].get("type") == "message"
    )
    assert "guardrail triggered: no_passwords" in json.dumps(feedback["item"])
    await sideband.expect("response.create")

    # A key press the graph does not map reaches the agent as the caller's words.
    await live.press(session_id, "5")
    pressed = await sideband.expect(
        "response.item.create",
        lambda e: e["item"].get("type") == "message" and "pressed 5" in json.dumps(e["item"]),
    )
    assert pressed["item"]["role"] == "user"

    # end_call: the goodbye is spoken, then the call is hung up, then session.closed.
    [bye] = await live.delegate(session_id, [("end_call", {})])
    await sideband.expect("response.item.create", _output_for(bye))
    await sideband.expect("response.create")
    await live.agent_says(session_id, "Thank you for calling, goodbye!")
    record = await ended_record(server, session_id, timeout=10)
    [hangup] = fake_openai.requests_for(session_id, "hangup")
    assert hangup.status == 200
    assert live.session(session_id).close_reason == "close_requested"
    assert record.engine == "live" and record.end_reason == "agent_end_call"
    assert record.agents_visited == ["Customer Service", "Billing Support"]
    assert [t.name for t in record.tool_calls] == ["get_weather", "end_call"]
    assert record.handoffs == 1 and record.guardrail_trips == 1
    assert "seconds" in record.usage and record.usage["total_tokens"] > 0
    spoken = [t["text"] for t in record.transcript if t["role"] == "agent"]
    assert "It is sunny in Paris today." in spoken
    assert fake_openai.client_schema_errors == [] and fake_openai.rest_schema_errors == []
    await assert_idle(server)


async def test_caller_hangup_during_a_tool(start_callserver, fake_openai: FakeOpenAI) -> None:
    from tests import call_tools

    server = await start_callserver(LIVE_DESK)
    session_id, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(session_id)
    cancelled = call_tools.CANCELLED
    await fake_openai.live.delegate(session_id, [("slow_lookup", {"order_id": "A1"})])
    await wait_for(lambda: call_tools.RUNNING == 1, what="tool running")
    started = time.monotonic()
    await fake_openai.live.caller_hangs_up(session_id)
    record = await ended_record(server, session_id)
    assert time.monotonic() - started < 1.0
    assert record.end_reason == "caller_hangup"
    assert record.tool_calls[0].outcome == "cancelled"
    assert call_tools.CANCELLED == cancelled + 1 and call_tools.RUNNING == 0
    assert not fake_openai.hangup_observed(session_id)  # the caller left: nothing to hang up
    assert record.usage["seconds"] >= 0
    await assert_idle(server)


async def test_transfer_refers_and_ends_without_hangup(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_DESK)
    session_id, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(session_id)
    await fake_openai.live.press(session_id, "0")
    record = await ended_record(server, session_id)
    [refer] = fake_openai.requests_for(session_id, "refer")
    assert refer.json == {"target_uri": "tel:+14155550100"}
    assert record.end_reason == "transferred" and record.transfer_target == "tel:+14155550100"
    assert not fake_openai.hangup_observed(session_id)


async def test_transfer_hangs_up_when_the_session_stays_open(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """What Live does after a REFER is undocumented: if the session stays open, callserver
    hangs it up after the settle time, and the call still ends as transferred."""
    server = await start_callserver(LIVE_DESK)
    server.services.manager.engines["live"].refer_settle_s = 0.3  # type: ignore[misc]
    fake_openai.live.end_on_refer = False
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    [call] = await fake_openai.live.delegate(session_id, [("put_through", {})])
    await sideband.expect("response.item.create", _output_for(call))
    record = await ended_record(server, session_id)
    assert fake_openai.requests_for(session_id, "refer")[0].json["target_uri"] == "tel:+14155550123"
    assert fake_openai.hangup_observed(session_id)
    assert record.end_reason == "transferred"


async def test_session_closed_reasons_map_to_end_reasons(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_DESK)
    expected = {
        "expired": "session_expired",
        "content": "content_policy",
        "connection_lost": "connection_lost",
    }
    for reason, ours in expected.items():
        session_id, _ = await place_live_call(server, fake_openai)
        await fake_openai.live.wait_attached(session_id)
        await fake_openai.live.close_session(session_id, reason)
        record = await ended_record(server, session_id)
        assert record.end_reason == ours, reason
        assert not fake_openai.hangup_observed(session_id)


async def test_sideband_not_regained_within_the_budget_hangs_up(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """A dropped sideband does not end a Live call. If it cannot be reattached within the
    budget, nobody would run the call's tools any more, so callserver hangs it up
    (control_lost) rather than leave the caller with a deaf agent."""
    from callserver.engines.base import ReattachPolicy

    server = await start_callserver(LIVE_DESK, reattach_budget_s=0.4)
    assert server.services.manager.engines["live"]._options.reattach == ReattachPolicy(0.4)  # type: ignore[attr-defined]
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    fake_openai.fail("attach", 503, times=1000, call_id=session_id)
    await sideband.drop()
    record = await ended_record(server, session_id)
    assert record.end_reason == "control_lost" and fake_openai.hangup_observed(session_id)
    attempts = fake_openai.requests_for(session_id, "attach")
    assert len(attempts) >= 3 and {a.status for a in attempts[1:]} == {503}
    assert record.reattaches == 0 and record.control_gap_s >= 0.4


async def test_idle_caller_is_prompted_then_hung_up(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_DESK)
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    await fake_openai.live.caller_says(session_id, "Hello?")
    prompt = await sideband.expect("session.instructions.append", timeout=5)
    assert "silent" in prompt["content"]
    record = await ended_record(server, session_id, timeout=5)
    assert record.end_reason == "idle_timeout" and fake_openai.hangup_observed(session_id)
    assert [t["text"] for t in record.transcript if t["role"] == "caller"] == ["Hello?"]


async def test_stored_call_recording_is_downloaded(
    start_callserver, fake_openai: FakeOpenAI, tmp_path
) -> None:
    server = await start_callserver(LIVE_DESK, recording_dir=tmp_path)
    fake_openai.live.recording_delay_s = 0.3  # finalising takes a moment: callserver retries
    session_id, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(session_id)
    assert fake_openai.requests_for(session_id, "accept")[0].json["session"]["store"] is True
    await fake_openai.live.caller_hangs_up(session_id)
    record = await ended_record(server, session_id)
    await wait_for(lambda: (record.recording or {}).get("status") == "saved", 10, "recording")
    path = record.recording["file"]
    assert path.startswith(str(tmp_path)) and path.endswith(f"{session_id}.wav")
    with open(path, "rb") as wav:
        assert wav.read(4) == b"RIFF"
    gets = fake_openai.requests_for(session_id, "content")
    assert len(gets) >= 2 and gets[0].headers["accept"] == "application/binary"
    assert oct((tmp_path / path).stat().st_mode & 0o777) == "0o600"


async def test_max_duration_hangs_up(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(LIVE_DESK, max_call_duration_s=0.5)
    session_id, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(session_id)
    record = await ended_record(server, session_id, timeout=5)
    assert record.end_reason == "max_duration" and fake_openai.hangup_observed(session_id)
    assert record.usage.get("seconds") is not None  # session.closed after our hangup


async def test_over_capacity_rejects_busy(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(LIVE_DESK, max_concurrent_calls=1)
    first, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(first)
    second, _ = await place_live_call(server, fake_openai)
    record = await ended_record(server, second)
    assert record.end_reason == "rejected:capacity"
    assert fake_openai.requests_for(second, "reject")[0].json == {"status_code": 486}
    assert fake_openai.live.session(second).reject_status == 486
    assert fake_openai.live.session(first).state == "accepted"


async def test_admin_show_hang_up_and_transfer_live_calls(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    import httpx

    token = {"Authorization": "Bearer admin-live-token"}
    server = await start_callserver(LIVE_DESK, admin_token="admin-live-token")
    first, _ = await place_live_call(server, fake_openai)
    second, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(first)
    await fake_openai.live.wait_attached(second)
    async with httpx.AsyncClient(base_url=server.url, headers=token, timeout=5) as client:
        shown = (await client.get(f"/admin/calls/{first}")).json()
        assert shown["engine"] == "live" and shown["graph"] == "live_desk"
        assert (await client.post(f"/admin/calls/{first}/hangup")).status_code == 200
        moved = await client.post(
            f"/admin/calls/{second}/transfer", json={"target_uri": "sip:desk@pbx.example.com"}
        )
        assert moved.status_code == 200, moved.text
    hung = await ended_record(server, first)
    assert hung.end_reason == "admin_hangup" and fake_openai.hangup_observed(first)
    assert fake_openai.live.session(first).close_reason == "close_requested"
    moved_record = await ended_record(server, second)
    assert moved_record.end_reason == "transferred"
    assert fake_openai.live.session(second).refer_target == "sip:desk@pbx.example.com"
    await assert_idle(server)


async def test_live_calls_are_recorded(start_callserver, fake_openai: FakeOpenAI, tmp_path) -> None:
    from callserver.records.cassette_reader import read_cassette

    server = await start_callserver(FRONTDESK_LIVE, recording_mode="on", recording_dir=tmp_path)
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    [call_id] = await fake_openai.live.delegate(session_id, [("get_weather", {"city": "Oslo"})])
    await sideband.expect("response.item.create", _output_for(call_id))
    await fake_openai.live.caller_hangs_up(session_id)
    await ended_record(server, session_id)
    [path] = list(tmp_path.rglob(f"{session_id}.cassette.jsonl"))
    await wait_for(lambda: '"closed"' in path.read_text(), what="cassette closed")
    cassette = read_cassette(path)
    assert cassette.first("webhook").data["body"]["type"] == "live.transport.incoming"
    [accept] = [e for e in cassette.of("rest") if e.data["action"] == "accept"]
    assert accept.data["request"]["session"]["type"] == "live" and accept.data["status"] == 200
    sent = [e.data["event"]["type"] for e in cassette.of("ws_out")]
    got = [e.data["event"]["type"] for e in cassette.of("ws_in")]
    assert "response.item.create" in sent and "response.create" in sent
    assert "session.closed" in got and "response.event" in got
    [tool] = cassette.of("tool")
    assert tool.data["name"] == "get_weather" and "Oslo" in tool.data["output"]
    assert cassette.first("end").data["reason"] == "caller_hangup"
    assert "sk-test-not-a-real-key" not in path.read_text()


async def test_accept_is_retried_within_the_ring_deadline(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_DESK)
    session_id = fake_openai.live.add_session()
    fake_openai.fail("accept", 503, times=2, call_id=session_id)
    await place_live_call(server, fake_openai, session_id=session_id)
    await fake_openai.live.wait_attached(session_id)
    statuses = [r.status for r in fake_openai.requests_for(session_id, "accept")]
    assert statuses == [503, 503, 200]


async def test_attach_refused_404_means_the_caller_is_gone(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_DESK)
    session_id = fake_openai.live.add_session()
    fake_openai.fail("attach", 404, call_id=session_id)
    await place_live_call(server, fake_openai, session_id=session_id)
    record = await ended_record(server, session_id)
    assert record.end_reason == "caller_hangup" and not fake_openai.hangup_observed(session_id)


async def test_attach_refused_otherwise_hangs_up(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(LIVE_DESK)
    session_id = fake_openai.live.add_session()
    fake_openai.fail("attach", 403, call_id=session_id)
    await place_live_call(server, fake_openai, session_id=session_id)
    record = await ended_record(server, session_id)
    assert record.end_reason == "connect_failed" and fake_openai.hangup_observed(session_id)


async def test_replayed_events_are_handled_once(start_callserver, fake_openai: FakeOpenAI) -> None:
    """An attach replays recent events with their original ids: callserver acts on each
    event id once (here: one key press that arrives twice ends the call once, and the
    tool call that arrives twice runs once)."""
    from callserver.testing import live_events as le

    server = await start_callserver(LIVE_DESK)
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    session = fake_openai.live.session(session_id)
    delegation = le.new_id("item")
    created = le.response_event(delegation, le.backend_response("resp_dup", "in_progress"))
    item = le.response_event(delegation, le.function_call_item("put_through", {}, "call_dup"))
    done = le.response_event(delegation, le.backend_response("resp_dup", "completed"))
    session.calls["call_dup"] = "resp_dup"
    for event in (created, item, item, done, done):
        await sideband.send(event)
    await sideband.expect("response.item.create", _output_for("call_dup"))
    record = await ended_record(server, session_id)
    assert record.end_reason == "transferred"
    assert len(fake_openai.requests_for(session_id, "refer")) == 1
    assert len(sideband.of_type("response.item.create")) == 1


async def test_drain_hangs_up_live_calls(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(LIVE_DESK, drain_timeout_s=0.3)
    session_id, _ = await place_live_call(server, fake_openai)
    await fake_openai.live.wait_attached(session_id)
    await server.services.manager.drain(0.3)
    record = await ended_record(server, session_id)
    assert record.end_reason == "shutdown" and fake_openai.hangup_observed(session_id)
    assert fake_openai.live.session(session_id).close_reason == "close_requested"
    assert record.usage.get("seconds") is not None
