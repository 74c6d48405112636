"""Watch one whole call offline: ``callserver demo``.

Starts the bundled fake OpenAI and a real callserver (both on loopback), then plays the part
of OpenAI and the caller: a signed ``realtime.call.incoming`` webhook, a weather question
(tool call), a request for billing (handoff), and a hangup (TCP drop); then what a backend
receives after the call (``demo_post_call``). Prints what crossed the wire. No network
access, no credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, run_callserver, test_settings


def say(who: str, text: str) -> None:
    print(f"{who:<24} {text}", flush=True)


def short(value: Any, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def run_demo(config: Path) -> int:
    """Play one call; returns a process exit code (0 if the call went as scripted)."""
    logging.getLogger().setLevel(logging.ERROR)
    from callserver.demo_post_call import after_the_call, post_call_backend  # uses say()

    async with FakeOpenAI() as fake, post_call_backend(fake) as (receiver, post_call):
        say("[fake OpenAI]", f"listening on {fake.base_url}")
        settings = test_settings(fake.base_url, config, **post_call)
        async with run_callserver(settings) as server:
            say("[callserver]", f"listening on {server.url}, config {config}")
            call_id, response = await fake.send_incoming_call(
                server.webhook_url,
                TEST_WEBHOOK_SECRET,
                from_="+14255550100",
                to="+18005551212",
                extra_headers=[("X-Tenant", "demo")],
            )
            say("OpenAI -> callserver", f"webhook realtime.call.incoming {call_id}")
            say("callserver -> OpenAI", f"HTTP {response.status_code} {response.json()}")
            conn = await fake.wait_connected(call_id)
            accept = fake.requests_for(call_id, "accept")[0]
            body = accept.json or {}
            say("callserver -> OpenAI", f"POST .../accept -> {accept.status}")
            say("", f"model {body.get('model')}, voice {body['audio']['output']['voice']}")
            say("", f"tools {[t['name'] for t in body.get('tools', [])]}")
            say("", f"instructions {short(body.get('instructions', ''))}")
            say("callserver -> OpenAI", f"websocket /v1/realtime?call_id={call_id}")
            update = await conn.expect("session.update")
            say("callserver -> OpenAI", "session.update (the same settings as the accept)")
            greeting = await conn.expect("response.create")
            say(
                "callserver -> OpenAI",
                f"response.create: {short(greeting['response'].get('instructions'))}",
            )
            del update

            say("caller", '"What is the weather in Paris?"')
            await conn.send(ev.input_transcription_completed(None, "What is the weather in Paris?"))
            await conn.send(ev.function_call_turn("get_weather", {"city": "Paris"}, "call_1"))
            say("OpenAI -> callserver", 'function call get_weather {"city": "Paris"}')
            output = await conn.expect(
                "conversation.item.create",
                lambda e: e["item"].get("type") == "function_call_output",
            )
            say("callserver -> OpenAI", f"function_call_output {short(output['item']['output'])}")
            await conn.expect("response.create")
            say("callserver -> OpenAI", "response.create (the agent answers)")

            say("caller", '"I have a question about my bill."')
            await conn.send(ev.function_call_turn("transfer_to_billing_support", {}, "call_2"))
            say("OpenAI -> callserver", "function call transfer_to_billing_support (handoff)")
            handoff = await conn.expect(
                "session.update",
                lambda e: "billing" in (e["session"].get("instructions") or "").lower(),
            )
            say(
                "callserver -> OpenAI",
                f"session.update: {short(handoff['session']['instructions'])}",
            )

            say("caller", "hangs up (the call ends; its websocket drops, no close frame)")
            await fake.caller_hangs_up(call_id)
            record = None
            for _ in range(200):
                record = await server.services.manager.registry.get(call_id)
                if record is not None and record.state.value == "ended":
                    break
                await asyncio.sleep(0.01)
            assert record is not None
            summary = record.summary()
            say("callserver", f"call ended: {summary['end_reason']}")
            say("", f"agents {summary['agents_visited']}")
            say("", f"tools {[t['name'] for t in summary['tool_calls']]}")
            say("", f"live calls now: {len(await server.services.manager.registry.live_calls())}")
            delivered = await after_the_call(fake, receiver)
            problems = fake.client_schema_errors
            say("schema check", "every client event valid" if not problems else str(problems))
            ok = record.end_reason == "caller_hangup" and not problems and delivered
            return 0 if ok else 1
