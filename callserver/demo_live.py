"""Watch one whole GPT-Live call offline: ``callserver demo --live``.

The fake OpenAI plays GPT-Live and the caller: a signed ``live.transport.incoming`` webhook,
a weather question (a function call delegated to the Responses backend), a request for
billing (a handoff: the delegation switches agents), a key press, and the caller hanging up
(``session.closed`` with ``remote_hangup``). Prints what crossed the wire.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from callserver.demo import say, short
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, run_callserver, test_settings


def _is_output(call_id: str):
    return lambda e: (
        e["item"].get("type") == "function_call_output" and e["item"]["call_id"] == call_id
    )


async def run_live_demo(config: Path) -> int:
    """Play one Live call; returns a process exit code (0 if it went as scripted)."""
    logging.getLogger().setLevel(logging.ERROR)
    async with FakeOpenAI() as fake:
        live = fake.live
        say("[fake OpenAI]", f"GPT-Live listening on {fake.base_url}/live")
        async with run_callserver(test_settings(fake.base_url, config)) as server:
            say("[callserver]", f"listening on {server.url}, config {config}")
            session_id, response = await fake.send_live_incoming(
                server.webhook_url, TEST_WEBHOOK_SECRET, from_="+14255550100", to="+18005550199"
            )
            say("OpenAI -> callserver", f"webhook live.transport.incoming {session_id}")
            say("callserver -> OpenAI", f"HTTP {response.status_code} {response.json()}")
            sideband = await live.wait_attached(session_id)
            accept = fake.requests_for(session_id, "accept")[0]
            session = (accept.json or {})["session"]
            delegation = session.get("delegation") or {}
            backend = delegation.get("responses") or {}
            say("callserver -> OpenAI", f"POST .../live/sessions/{{id}}/accept -> {accept.status}")
            say("", f"model {session['model']}, voice {session['audio']['output']['voice']}")
            say("", f"delegation {delegation.get('type')}, backend {backend.get('model')}")
            say("", f"tools {[t['name'] for t in backend.get('tools', [])]}")
            say("callserver -> OpenAI", "websocket /v1/live/sessions/{id}/attach (sideband)")

            say("caller", '"What is the weather in Paris?"')
            await live.caller_says(session_id, "What is the weather in Paris?")
            [weather] = await live.delegate(session_id, [("get_weather", {"city": "Paris"})])
            say(
                "OpenAI -> callserver",
                'response.event: function call get_weather {"city": "Paris"}',
            )
            output = await sideband.expect("response.item.create", _is_output(weather))
            say("callserver -> OpenAI", f"response.item.create {short(output['item']['output'])}")
            await sideband.expect("response.create")
            say("callserver -> OpenAI", "response.create (the backend continues)")
            await live.agent_says(session_id, "It is sunny in Paris, 72 degrees.")
            say("agent", '"It is sunny in Paris, 72 degrees."')

            say("caller", '"I have a question about my bill."')
            [handoff] = await live.delegate(session_id, [("transfer_to_billing_support", {})])
            say("OpenAI -> callserver", "response.event: function call transfer_to_billing_support")
            update = await sideband.expect("session.update")
            instructions = update["session"]["delegation"]["responses"]["instructions"]
            say("callserver -> OpenAI", f"session.update delegation: {short(instructions)}")
            told = await sideband.expect("session.instructions.append")
            say("callserver -> OpenAI", f"session.instructions.append: {short(told['content'])}")
            await sideband.expect("response.item.create", _is_output(handoff))

            say("caller", "presses 5")
            await live.press(session_id, "5")
            await sideband.expect("response.item.create", lambda e: "pressed 5" in str(e["item"]))
            say("callserver -> OpenAI", "response.item.create: user message 'The caller pressed 5'")

            say("caller", "hangs up (session.closed, reason remote_hangup)")
            await live.caller_hangs_up(session_id)
            registry = server.services.manager.registry
            record = None
            for _ in range(300):
                record = await registry.get(session_id)
                if record is not None and record.state.value == "ended":
                    break
                await asyncio.sleep(0.01)
            assert record is not None
            summary = record.summary()
            say("callserver", f"call ended: {summary['end_reason']} (engine {summary['engine']})")
            say("", f"agents {summary['agents_visited']}")
            say("", f"tools {[t['name'] for t in summary['tool_calls']]}")
            say("", f"usage {summary['usage']}")
            problems = fake.client_schema_errors + fake.rest_schema_errors
            say(
                "schema check",
                "every message valid (openai package's Live types)"
                if not problems
                else str(problems),
            )
            return 0 if record.end_reason == "caller_hangup" and not problems else 1
