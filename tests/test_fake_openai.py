"""The fake OpenAI against the real openai-agents SIP model: all the SDK sends is GA-valid."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from callserver.testing import server_events as se
from callserver.testing.fake_openai import FakeOpenAI
from tests.fake_openai_support import accepted_call

pytest_plugins = ["tests.fake_openai_fixtures"]
"""The ``rest`` and ``live`` fixtures."""


async def test_agents_sdk_sip_model_sends_valid_events(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    """The openai-agents SIP model connects, runs a tool and a handoff; all it sends is GA-valid."""
    from agents import function_tool
    from agents.realtime import OpenAIRealtimeSIPModel, RealtimeAgent, RealtimeRunner

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Find an order."""
        return f"order {order_id} ships tomorrow"

    billing = RealtimeAgent(name="billing", instructions="You handle billing.")
    front = RealtimeAgent(
        name="front", instructions="Answer calls.", tools=[lookup_order], handoffs=[billing]
    )
    call_id = await accepted_call(fake_openai, rest)
    runner = RealtimeRunner(front, model=OpenAIRealtimeSIPModel())
    model_config: Any = {
        "call_id": call_id,
        "url": fake_openai.realtime_url(call_id),
        "api_key": "sk-test",
        "initial_model_settings": {"tracing": None},
    }
    session = await runner.run(model_config=model_config)
    events: list[Any] = []

    async def consume() -> None:
        async for event in session:
            events.append(event)

    async with session:
        consumer = asyncio.create_task(consume())
        conn = await fake_openai.wait_connected(call_id)
        update = await conn.expect("session.update")
        tools = [t["name"] for t in update["session"]["tools"]]
        assert tools == ["lookup_order", "transfer_to_billing"]

        await conn.send(se.function_call_turn("lookup_order", {"order_id": "42"}, "call_1"))
        output = await conn.expect(
            "conversation.item.create", lambda e: e["item"]["type"] == "function_call_output"
        )
        assert output["item"]["output"] == "order 42 ships tomorrow"
        await conn.expect("response.create")

        await conn.send(se.function_call_turn("transfer_to_billing", {}, "call_2"))
        await conn.expect(
            "session.update", lambda e: e["session"].get("instructions") == "You handle billing."
        )
        await conn.send(se.assistant_turn("Billing here, how can I help?"))
        await conn.send([se.speech_started(audio_start_ms=10), se.dtmf("5")])
        await conn.send(se.input_transcription_completed("item_u1", "my bill"))
        await asyncio.sleep(0.1)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    await conn.wait_closed()
    assert {"tool_end", "handoff"} <= {e.type for e in events}
    assert [e for e in events if e.type == "error"] == []
    assert fake_openai.client_schema_errors == []
