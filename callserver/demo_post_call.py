"""The after-the-call part of ``callserver demo``: a local backend receives the signed
``call.ended`` and, for a graph with ``analysis:``, ``call.analyzed`` (the fake Responses API
answers), and the demo prints them."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from callserver.demo import say, short
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_responses import example_for
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


def scripted_analysis(body: dict[str, Any]) -> dict[str, Any]:
    """The demo answer when it fits the graph's schema, else a valid example of it."""
    schema = body["text"]["format"]["schema"]
    if Draft202012Validator(schema).is_valid(DEMO_ANALYSIS):
        return DEMO_ANALYSIS
    return example_for(schema)


@contextlib.asynccontextmanager
async def post_call_backend(
    fake: FakeOpenAI,
) -> AsyncIterator[tuple[PostCallReceiver, dict[str, Any]]]:
    """A receiver for the events, the fake's scripted analysis, and the settings that point
    callserver at them (its outbox in a temporary directory, removed afterwards)."""
    fake.responses.answer(scripted_analysis)
    async with PostCallReceiver(POSTCALL_SECRET) as receiver:
        with tempfile.TemporaryDirectory(prefix="callserver-demo-") as tmp:
            yield (
                receiver,
                {
                    "postcall_urls": (receiver.url,),
                    "postcall_secret": POSTCALL_SECRET,
                    "outbox_path": Path(tmp) / "outbox.sqlite3",
                },
            )


async def after_the_call(fake: FakeOpenAI, receiver: PostCallReceiver) -> bool:
    """Print the post-call events; True if every one that should arrive did, valid."""
    [(ended, headers)] = await receiver.wait("call.ended")
    data = ended["data"]
    pending = data.get("analysis")
    say("callserver -> backend", f"call.ended (signed, {headers['webhook-id']})")
    say("", f"transcript {len(data['transcript'])} turns, redacted {data['transcript_redactions']}")
    if pending is None:
        say("", "no analysis: block in this graph")
        return receiver.rejected == 0
    [request] = await fake.responses.wait_requests(1)
    fmt = request.json["text"]["format"]
    say("callserver -> OpenAI", f"POST /v1/responses model {request.json['model']}")
    say("", f"structured output {fmt['name']} (strict): {list(fmt['schema']['properties'])}")
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    result = analyzed["data"]
    status = result["status"]
    say("callserver -> backend", f"call.analyzed {status} (signed, {pending['webhook_id']})")
    if status != "completed":
        say("", f"error {result['error']}")
        return False
    for key, value in result["result"].items():
        say("", f"{key} {short(value, 200)}")
    return not fake.responses.schema_errors and receiver.rejected == 0
