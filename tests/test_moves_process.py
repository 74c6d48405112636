"""Calls survive deploys: a rolling restart of three real instances hands every live call to a
peer (no call hung up, every call still answering tool calls), with two control connections
at once or, where only one is allowed, make-after-break; the last instance drains as before."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET
from callserver.testing.postcall_receiver import PostCallReceiver
from tests.conftest import ROOT
from tests.e2e import wait_for
from tests.fleet import Fleet, Instance
from tests.redis_support import delete_prefix

SECRET = "whsec_" + "bW92ZXMtcG9zdGNhbGwtc2VjcmV0LWZvci10ZXN0cyEh"
LIVE_NUMBER = "+18005550199"


@pytest.fixture
async def receiver() -> AsyncIterator[PostCallReceiver]:
    async with PostCallReceiver(SECRET) as events:
        yield events


@pytest.fixture
async def fleet(
    fake_openai: FakeOpenAI, redis_url: str, tmp_path, receiver: PostCallReceiver
) -> AsyncIterator[Fleet]:
    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    f = Fleet(fake_openai, redis_url, prefix, tmp_path)
    f.extra_env = {
        "CALLSERVER_CONFIG": str(ROOT / "config"),
        "CALLSERVER_DRAIN_TIMEOUT": "20",
        "CALLSERVER_POSTCALL_URLS": receiver.url,
        "CALLSERVER_POSTCALL_SECRET": SECRET,
        "CALLSERVER_OUTBOX_PATH": str(tmp_path / "outbox-{name}.sqlite3"),
    }
    try:
        yield f
    finally:
        await f.aclose()
        await delete_prefix(redis_url, prefix)


async def _place(fleet: Fleet, instance: Instance, live: bool) -> str:
    if live:
        session_id, response = await fleet.fake.send_live_incoming(
            instance.webhook_url, TEST_WEBHOOK_SECRET, to=LIVE_NUMBER, client=fleet.http
        )
        assert response.json()["status"] == "started", response.text
        await fleet.fake.live.wait_attached(session_id)
        return session_id
    return await fleet.place_call(instance)


async def _answers_a_tool_call(fake: FakeOpenAI, call_id: str, n: int) -> None:
    """The call's current owner runs a tool for it, exactly once."""
    if call_id.startswith("live_"):
        sideband = await fake.live.wait_attached(call_id)
        [tool_call] = await fake.live.delegate(call_id, [("get_weather", {"city": f"C{n}"})])
        output = await sideband.expect(
            "response.item.create", lambda e: e["item"].get("call_id") == tool_call
        )
    else:
        conn = await fake.wait_connected(call_id)
        fc = f"fc_{n}_{uuid.uuid4().hex[:6]}"
        await fake.broadcast(call_id, ev.function_call_turn("get_weather", {"city": f"C{n}"}, fc))
        output = await conn.expect(
            "conversation.item.create", lambda e: e["item"].get("call_id") == fc
        )
    assert f"C{n}" in output["item"]["output"]


async def _roll(fleet: Fleet) -> None:
    """Replace every instance, one at a time: start the new one, then SIGTERM the old."""
    for old in list(fleet.instances):
        await fleet.start(1)
        old.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(old.proc.wait(), 15)  # far less than the drain timeout
        assert code == 0, old.log.read_text()[-3000:]


async def _rolling_restart(fleet: Fleet, receiver: PostCallReceiver, calls_per: int) -> list[str]:
    fake = fleet.fake
    await fleet.start(3)
    calls = []
    for n in range(calls_per * 3):
        instance = fleet.instances[n % 3]
        calls.append(await _place(fleet, instance, live=n % 3 == 2))
    for n, call_id in enumerate(calls):
        await _answers_a_tool_call(fake, call_id, n)
    await _roll(fleet)
    for n, call_id in enumerate(calls):
        assert not fake.hangup_observed(call_id), call_id
        await _answers_a_tool_call(fake, call_id, 100 + n)
    # Admin and post-call work follow the call to its new owner.
    first = calls[0]
    hung = await fleet.admin(fleet.instances[-1], "POST", f"/admin/calls/{first}/hangup")
    assert hung.status_code == 200, hung.text
    await wait_for(lambda: fake.hangup_observed(first), timeout=10, what="routed admin hangup")
    for call_id in calls[1:]:
        if call_id.startswith("live_"):
            await fake.live.caller_hangs_up(call_id)
        else:
            await fake.caller_hangs_up(call_id)
    events = await receiver.wait("call.ended", count=len(calls), timeout=30)
    ended = {payload["data"]["call_id"]: payload["data"] for payload, _ in events}
    assert set(ended) == set(calls) and len(events) == len(calls)  # once each
    assert ended[first]["end_reason"] == "admin_hangup"
    for call_id in calls:
        assert len(fake.requests_for(call_id, "accept")) == 1
        assert len(fake.requests_for(call_id, "hangup")) == (1 if call_id == first else 0)
    return calls


async def test_rolling_restart_hands_every_call_over(
    fleet: Fleet, receiver: PostCallReceiver
) -> None:
    await _rolling_restart(fleet, receiver, calls_per=10)


async def test_rolling_restart_make_after_break(fleet: Fleet, receiver: PostCallReceiver) -> None:
    """Where only one control connection per call is allowed, the hand-over breaks first."""
    fleet.fake.max_connections = 1
    fleet.fake.live.max_sidebands = 1
    calls = await _rolling_restart(fleet, receiver, calls_per=3)
    for call_id in calls:
        if call_id.startswith("live_"):  # refused after the upgrade, with an error event
            sidebands = fleet.fake.live.session(call_id).sidebands
            refused = [s for s in sidebands if any(e["type"] == "error" for e in s.sent)]
            assert refused, call_id
        else:  # a second one refused (409), then the after-break attach; 404 once ended
            attaches = fleet.fake.requests_for(call_id, "realtime")
            assert {a.status for a in attaches} <= {101, 404, 409}
            assert 409 in {a.status for a in attaches}


async def test_last_instance_drains_as_before(fleet: Fleet) -> None:
    """No peer to hand over to: SIGTERM drains (calls go on until the drain timeout)."""
    fleet.extra_env["CALLSERVER_DRAIN_TIMEOUT"] = "0.5"
    await fleet.start(1)
    [only] = fleet.instances
    call_id = await fleet.place_call(only)
    only.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(only.proc.wait(), 15) == 0
    assert fleet.fake.hangup_observed(call_id)


async def test_hand_over_mid_tool_and_mid_key_sequence(fleet: Fleet) -> None:
    """A tool running when the instance leaves finishes there, its output delivered once; a
    key sequence begun there is finished on the new owner; the agent and timers go on."""
    fleet.extra_env["CALLSERVER_CONFIG"] = str(ROOT / "tests" / "configs" / "moves.yaml")
    fake = fleet.fake
    await fleet.start(2)
    a, _ = fleet.instances
    call_id = await fleet.place_call(a)
    first = await fake.wait_connected(call_id)
    await first.expect("session.update")
    await fake.broadcast(call_id, [ev.dtmf("1"), ev.dtmf("2")])
    await fake.broadcast(call_id, ev.function_call_turn("long_lookup", {"order_id": "Z9"}, "fc_z"))
    await asyncio.sleep(0.3)  # the tool is running on a
    a.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(a.proc.wait(), 15) == 0
    outputs = [
        e
        for conn in fake.connections[call_id]
        for e in conn.received
        if e.get("type") == "conversation.item.create" and e["item"].get("call_id") == "fc_z"
    ]
    assert len(outputs) == 1 and "Z9 found" in outputs[0]["item"]["output"]
    second = await fake.wait_connected(call_id)
    assert second is not first
    await fake.broadcast(call_id, [ev.dtmf("3"), ev.dtmf("#")])
    update = await second.expect(
        "session.update", lambda e: "technical support" in e["session"]["instructions"]
    )
    assert update
    assert not fake.hangup_observed(call_id)
