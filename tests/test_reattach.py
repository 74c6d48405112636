"""A dropped control connection is not a hangup: callserver reattaches to the same call and
carries on, on both engines; a call that ended meanwhile ends once, without a hangup."""

from __future__ import annotations

import asyncio

import httpx

from callserver.testing import live_events as le
from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from tests.conftest import ROOT
from tests.e2e import assert_idle, ended_record, place_call, place_live_call, wait_for

SLOW = ROOT / "tests" / "configs" / "reattach_tools.yaml"
LIVE = ROOT / "tests" / "configs" / "live_desk.yaml"


def _output_for(call_id: str):
    return lambda e: (e.get("item") or {}).get("call_id") == call_id


async def _metric(server, name: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_realtime_drop_reattaches_and_the_call_goes_on(
    callserver, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    first = await fake_openai.wait_connected(call_id)
    await first.expect("session.update")
    await first.send(ev.function_call_turn("transfer_to_billing_support", {}, call_id="fc_h"))
    billing = await first.expect("session.update", lambda e: "billing" in str(e).lower())

    await first.drop()  # a network blip: the call is still up at OpenAI
    second = await fake_openai.wait_connected(call_id, index=1)
    again = await second.expect("session.update")
    assert again["session"]["instructions"] == billing["session"]["instructions"]  # current agent
    await second.send(ev.function_call_turn("transfer_to_customer_service", {}, call_id="fc_b"))
    await second.expect("conversation.item.create", lambda e: e["item"].get("call_id") == "fc_b")

    record = await callserver.services.manager.registry.get(call_id)
    assert record is not None and record.live and record.reattaches == 1
    assert 0 < record.control_gap_s < 2
    assert not fake_openai.hangup_observed(call_id)
    assert 'outcome="back"' in await _metric(callserver, "callserver_reattaches_total")
    await fake_openai.caller_hangs_up(call_id)
    assert (await ended_record(callserver, call_id)).end_reason == "caller_hangup"


async def test_a_clean_close_without_the_call_ending_is_reattached(
    callserver, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    first = await fake_openai.wait_connected(call_id)
    await first.expect("session.update")
    await first.close(1000)
    second = await fake_openai.wait_connected(call_id, index=1)
    await second.expect("session.update")
    assert (await callserver.services.manager.registry.get(call_id)).live


async def test_tool_output_made_while_away_is_delivered_after(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """The tool finishes while the websocket is down (the first reattach attempts are
    refused): its output goes out on the new connection, and the tool ran once."""
    from tests import call_tools

    server = await start_callserver(SLOW)
    call_id, _ = await place_call(server, fake_openai)
    first = await fake_openai.wait_connected(call_id)
    await first.expect("session.update")
    runs = call_tools.QUICK_RUNS
    await first.send(ev.function_call_turn("quick_lookup", {"order_id": "A7"}, call_id="fc_q"))
    fake_openai.fail("realtime", 503, times=3, call_id=call_id)
    await first.drop()
    second = await fake_openai.wait_connected(call_id, index=1, timeout=5)
    output = await second.expect(
        "conversation.item.create", lambda e: e["item"].get("call_id") == "fc_q"
    )
    assert "A7 shipped" in output["item"]["output"]
    await second.expect("response.create")
    assert call_tools.QUICK_RUNS == runs + 1
    assert [r.status for r in fake_openai.requests_for(call_id, "realtime")][1:4] == [503] * 3
    assert not any(
        e.get("type") == "conversation.item.create" and e["item"].get("call_id") == "fc_q"
        for e in first.received
    )


async def test_caller_gone_during_the_gap_ends_once_without_hangup(
    callserver, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await fake_openai.caller_hangs_up(call_id)  # the call ends and the websocket drops
    record = await ended_record(callserver, call_id)
    assert record.end_reason == "caller_hangup" and record.reattaches == 0
    assert not fake_openai.hangup_observed(call_id)
    attempts = fake_openai.requests_for(call_id, "realtime")
    assert [a.status for a in attempts] == [101, 404]  # one reattach attempt: refused
    assert 'outcome="gone"' in await _metric(callserver, "callserver_reattaches_total")
    await assert_idle(callserver)


async def test_budget_spent_ends_control_lost_with_a_hangup(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(reattach_budget_s=0.5)
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    fake_openai.fail("realtime", 503, times=1000, call_id=call_id)
    await conn.drop()
    record = await ended_record(server, call_id)
    assert record.end_reason == "control_lost"
    assert fake_openai.hangup_observed(call_id)  # no caller left with a deaf agent
    assert record.control_gap_s >= 0.5


async def test_live_sideband_drop_reattaches_deduplicates_and_goes_on(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """Live: the attach replays the last 3 s with the original event ids; a key pressed
    before the drop is in the replay but acted on once; the call goes on."""
    server = await start_callserver(LIVE)
    live = fake_openai.live
    session_id, _ = await place_live_call(server, fake_openai)
    first = await live.wait_attached(session_id)
    live.end_on_refer = False  # the session stays up after the REFER (settled later)
    await live.caller_says(session_id, "Hello there")
    await live.press(session_id, "0")  # the transfer key: acts once, before and after
    await wait_for(lambda: fake_openai.requests_for(session_id, "refer"), what="refer")
    await first.drop()
    second = await live.wait_attached(session_id, index=1)
    replayed = [e["type"] for e in second.sent]
    assert "transport.dtmf.received" in replayed  # the replay window carries it again
    await asyncio.sleep(0.2)
    assert len(fake_openai.requests_for(session_id, "refer")) == 1


async def test_live_tool_output_made_while_away_is_delivered_after(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    from tests import call_tools

    server = await start_callserver(LIVE)
    live = fake_openai.live
    session_id, _ = await place_live_call(server, fake_openai)
    first = await live.wait_attached(session_id)
    runs = call_tools.QUICK_RUNS
    [call] = await live.delegate(session_id, [("quick_lookup", {"order_id": "B2"})])
    fake_openai.fail("attach", 503, times=2, call_id=session_id)
    await first.drop()
    second = await live.wait_attached(session_id, index=1, timeout=5)
    output = await second.expect("response.item.create", _output_for(call))
    assert "B2 shipped" in output["item"]["output"]
    await second.expect("response.create")
    assert call_tools.QUICK_RUNS == runs + 1
    assert live.session(session_id).outputs == {call: output["item"]["output"]}
    record = await server.services.manager.registry.get(session_id)
    assert (
        record is not None
        and record.reattaches == 1
        and not fake_openai.hangup_observed(session_id)
    )


async def test_live_handoff_is_sent_again_after_a_reattach(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(ROOT / "config" / "frontdesk_live.yaml")
    live = fake_openai.live
    session_id, _ = await place_live_call(server, fake_openai)
    first = await live.wait_attached(session_id)
    await live.delegate(session_id, [("transfer_to_billing_support", {})])
    update = await first.expect("session.update")
    await first.drop()
    second = await live.wait_attached(session_id, index=1)
    again = await second.expect("session.update")
    assert again["session"] == update["session"]  # Billing Support's delegation, again
    assert fake_openai.client_schema_errors == []


async def test_live_caller_gone_during_the_gap(start_callserver, fake_openai: FakeOpenAI) -> None:
    """The session closed while the sideband was down (its session.closed went to nobody):
    the reattach is refused, and the call ends as a caller hangup, without a hangup."""
    server = await start_callserver(LIVE)
    live = fake_openai.live
    session_id, _ = await place_live_call(server, fake_openai)
    first = await live.wait_attached(session_id)
    session = live.session(session_id)
    session.sidebands.remove(first)  # the closing session.closed will not reach it
    await first.drop()
    session.sidebands.append(first)
    await live.close_session(session_id, "remote_hangup")
    record = await ended_record(server, session_id)
    assert record.end_reason == "caller_hangup" and not fake_openai.hangup_observed(session_id)


async def test_replayed_event_ids_never_act_twice(start_callserver, fake_openai) -> None:
    server = await start_callserver(LIVE)
    session_id, _ = await place_live_call(server, fake_openai)
    sideband = await fake_openai.live.wait_attached(session_id)
    key = le.dtmf_received("0")
    await sideband.send(key)
    await sideband.send(key)
    await ended_record(server, session_id)
    assert len(fake_openai.requests_for(session_id, "refer")) == 1
