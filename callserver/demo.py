"""Watch one whole call offline: ``callserver demo``.

Starts the bundled fake OpenAI and a real callserver (both on loopback), then plays the part
of OpenAI and the caller: a signed ``realtime.call.incoming`` webhook, a weather question
(tool call), a request for billing (handoff), and a hangup (TCP drop). After the call, a
local receiver gets the signed ``call.ended`` and, for a graph with ``analysis:``, the
``call.analyzed`` event (the fake Responses API answers). Prints what crossed the wire. No
network access, no credentials.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from callserver.calls.records import CallRecord
from callserver.settings import Settings
from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_responses import example_for
from callserver.testing.harness import (
    TEST_WEBHOOK_SECRET,
    RunningServer,
    run_callserver,
    test_settings,
)
from callserver.testing.postcall_receiver import PostCallReceiver

POSTCALL_SECRET = "whsec_" + "ZGVtby1wb3N0LWNhbGwtc2VjcmV0LW5vdC1yZWFsLTEyMzQ="
"""Signs the demo's post-call events; obviously fake, like the webhook secret."""

DEMO_ANALYSIS = {
    "summary": "The caller asked about the weather in Paris (sunny, 72°F), then had a "
    "question about their bill and was handed to Billing Support before hanging up.",
    "fields": {
        "reason": "billing",
        "appointment_booked": False,
        "appointment": None,
        "follow_up": "Check whether the billing question was resolved.",
    },
    "success": {
        "achieved": True,
        "reason": "The weather question was answered and the caller reached billing.",
    },
}
"""What the fake Responses API answers for the bundled front desk's analysis schema."""


def say(who: str, text: str) -> None:
    print(f"{who:<24} {text}", flush=True)


def short(value: Any, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def ended(server: RunningServer, call_id: str, timeout: float = 3.0) -> CallRecord:
    """The call's record once it has ended (the end path runs in the background)."""
    await server.services.manager.wait_ended(call_id, timeout)
    record = await server.services.manager.registry.get(call_id)
    assert record is not None and record.state.value == "ended"
    return record


def _scripted_analysis(body: dict[str, Any]) -> dict[str, Any]:
    """The demo answer when it fits the graph's schema, else a valid example of it."""
    schema = body["text"]["format"]["schema"]
    if Draft202012Validator(schema).is_valid(DEMO_ANALYSIS):
        return DEMO_ANALYSIS
    return example_for(schema)


async def _after_the_call(
    fake: FakeOpenAI, receiver: PostCallReceiver, server: RunningServer
) -> bool:
    """Print the post-call events; True if every one that should arrive did."""
    [(ended, headers)] = await receiver.wait("call.ended")
    data = ended["data"]
    pending = data.get("analysis")
    say("callserver -> backend", f"call.ended (signed, {headers['webhook-id']})")
    say(
        "", f"transcript {len(data['transcript'])} turns, redacted {data['transcript_redactions']}"
    )
    if pending is None:
        say("", "no analysis: block in this graph")
        return True
    [request] = await fake.responses.wait_requests(1)
    fmt = request.json["text"]["format"]
    say("callserver -> OpenAI", f"POST /v1/responses model {request.json['model']}")
    say("", f"structured output {fmt['name']} (strict): {list(fmt['schema']['properties'])}")
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    result = analyzed["data"]
    say(
        "callserver -> backend",
        f"call.analyzed {result['status']} (signed, {pending['webhook_id']})",
    )
    if result["status"] != "completed":
        say("", f"error {result['error']}")
        return False
    for key, value in result["result"].items():
        say("", f"{key} {short(value, 200)}")
    return not fake.responses.schema_errors and receiver.rejected == 0


async def run_demo(config: Path) -> int:
    """Play one call; returns a process exit code (0 if the call went as scripted)."""
    logging.getLogger().setLevel(logging.ERROR)
    async with (
        FakeOpenAI() as fake,
        PostCallReceiver(POSTCALL_SECRET) as receiver,
    ):
        say("[fake OpenAI]", f"listening on {fake.base_url}")
        fake.responses.answer(_scripted_analysis)
        with tempfile.TemporaryDirectory(prefix="callserver-demo-") as tmp:
            settings = test_settings(
                fake.base_url,
                config,
                postcall_urls=(receiver.url,),
                postcall_secret=POSTCALL_SECRET,
                outbox_path=Path(tmp) / "outbox.sqlite3",
            )
            return await _play(fake, receiver, settings, config)


async def _play(
    fake: FakeOpenAI, receiver: PostCallReceiver, settings: Settings, config: Path
) -> int:
    """The call itself, against a callserver that lives only as long as the call and the
    delivery of its post-call events."""
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

        say("caller", "hangs up (the TCP connection drops, no close frame)")
        await conn.drop()
        record = await ended(server, call_id)
        summary = record.summary()
        say("callserver", f"call ended: {summary['end_reason']}")
        say("", f"agents {summary['agents_visited']}")
        say("", f"tools {[t['name'] for t in summary['tool_calls']]}")
        say("", f"live calls now: {len(await server.services.manager.registry.live_calls())}")
        delivered = await _after_the_call(fake, receiver, server)
        problems = fake.client_schema_errors
        say("schema check", "every client event valid" if not problems else str(problems))
        ok = record.end_reason == "caller_hangup" and not problems and delivered
        return 0 if ok else 1
