"""Reattach on a real process: the network between callserver and OpenAI is cut (a TCP
proxy closes every connection); the call goes on, or ends once if the caller left."""

from __future__ import annotations

from typing import Any

import httpx

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from tests.e2e import wait_for
from tests.tcp_proxy import TcpProxy
from tests.test_process import service_env, start_service

ADMIN = "reattach-admin-token"


async def _record(port: int, call_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/admin/calls/{call_id}",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
    return response.json()


async def _serving_through(fake: FakeOpenAI, proxy: TcpProxy) -> tuple[Any, int]:
    env = service_env(fake, CALLSERVER_ADMIN_TOKEN=ADMIN, CALLSERVER_REATTACH_BUDGET="5")
    env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{proxy.port}/v1"
    port = free_port()
    return await start_service(env, port), port


async def test_cut_mid_call_reattaches_and_the_next_tool_call_is_answered(
    fake_openai: FakeOpenAI,
) -> None:
    proxy = TcpProxy("127.0.0.1", fake_openai.port)
    await proxy.start()
    proc, port = await _serving_through(fake_openai, proxy)
    try:
        call_id, _ = await fake_openai.send_incoming_call(
            f"http://127.0.0.1:{port}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        first = await fake_openai.wait_connected(call_id)
        await first.expect("session.update")
        await proxy.cut()  # every connection through the proxy closes; the call is up
        second = await fake_openai.wait_connected(call_id, index=1, timeout=10)
        await second.expect("session.update")
        await second.send(ev.function_call_turn("get_weather", {"city": "Oslo"}, call_id="fc_o"))
        output = await second.expect(
            "conversation.item.create", lambda e: e["item"].get("call_id") == "fc_o"
        )
        assert "Oslo" in output["item"]["output"]
        record = await _record(port, call_id)
        assert record["state"] == "active" and record["reattaches"] == 1
        assert not fake_openai.hangup_observed(call_id)
        await fake_openai.caller_hangs_up(call_id)

        async def ended() -> bool:
            return (await _record(port, call_id))["state"] == "ended"

        await wait_for(ended, timeout=10, what="call ended")
        assert (await _record(port, call_id))["end_reason"] == "caller_hangup"
        assert not fake_openai.hangup_observed(call_id)
    finally:
        proc.terminate()
        await proc.wait()
        await proxy.stop()


async def test_cut_while_the_caller_is_gone_ends_once_without_hangup(
    fake_openai: FakeOpenAI,
) -> None:
    proxy = TcpProxy("127.0.0.1", fake_openai.port)
    await proxy.start()
    proc, port = await _serving_through(fake_openai, proxy)
    try:
        call_id, _ = await fake_openai.send_incoming_call(
            f"http://127.0.0.1:{port}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        conn = await fake_openai.wait_connected(call_id)
        await conn.expect("session.update")
        fake_openai.calls[call_id].state = "ended"  # the caller hung up during the blip
        await proxy.cut()

        async def ended() -> bool:
            return (await _record(port, call_id))["state"] == "ended"

        await wait_for(ended, timeout=10, what="call ended")
        record = await _record(port, call_id)
        assert record["end_reason"] == "caller_hangup" and record["reattaches"] == 0
        assert not fake_openai.hangup_observed(call_id)
        assert [r.status for r in fake_openai.requests_for(call_id, "realtime")] == [101, 404]
    finally:
        proc.terminate()
        await proc.wait()
        await proxy.stop()
