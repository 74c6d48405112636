"""Record calls made against the fake OpenAI: scripted scenarios that produce cassettes.

``scripts/record_replays.py`` uses these to (re)make ``tests/replays/``; tests use them for
record-then-replay round trips. Each scenario drives one call from the fake's side and
returns its call id; the server must be recording (see :func:`recording_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from callserver.config_holder import ConfigHolder
from callserver.records.cassette import CassetteRecorderFactory
from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_sideband import FakeSideband
from callserver.testing.harness import (
    TEST_WEBHOOK_SECRET,
    RunningServer,
    run_callserver,
    test_settings,
)
from callserver.testing.replay_tools import stub_tools

__all__ = ["SCENARIOS", "Scenario", "recording_server"]

Scenario = Callable[[FakeOpenAI, RunningServer], Awaitable[str]]
SLOW_TOOL = "book_appointment"
"""In recording runs this tool takes 30 s, so a caller can hang up while it runs."""


@contextlib.asynccontextmanager
async def recording_server(
    config: Path | str,
    directory: Path,
    *,
    slow_tool: str | None = SLOW_TOOL,
    redact_fields: tuple[str, ...] = (),
) -> AsyncIterator[tuple[FakeOpenAI, RunningServer, CassetteRecorderFactory]]:
    """A fake OpenAI and a recording callserver on ``config``; ``slow_tool`` hangs for 30 s.

    ``redact_fields`` are extra names to redact, as ``recording_redact_fields`` would set.
    """
    holder = ConfigHolder.load(Path(config))
    if slow_tool:

        async def slow(call_id: str, name: str, arguments: str) -> str:
            await asyncio.sleep(30)
            return f"{name} done"

        others = {t for g in holder.current.graphs.values() for t in _tools(g)} - {slow_tool}
        holder = ConfigHolder(holder.path, stub_tools(holder.current, others, slow))
    async with FakeOpenAI() as fake:
        settings = test_settings(
            fake.base_url,
            config,
            recording_mode="on",
            recording_dir=directory,
            recording_redact_fields=redact_fields,
        )
        async with run_callserver(settings, config=holder) as server:
            factory = server.services.manager.recorder_factory
            assert isinstance(factory, CassetteRecorderFactory)
            try:
                yield fake, server, factory
            finally:
                await asyncio.sleep(0)


def _tools(graph: Any) -> set[str]:
    return {t.name for plan in graph.agents.values() for t in plan.tools}


async def _start(fake: FakeOpenAI, server: RunningServer) -> tuple[str, Any]:
    call_id, _ = await fake.send_incoming_call(server.webhook_url, TEST_WEBHOOK_SECRET)
    conn = await fake.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.expect("response.create")  # the greeting, answered by the fake
    await asyncio.sleep(0.05)
    return call_id, conn


async def _ended(server: RunningServer, call_id: str) -> None:
    await server.services.manager.wait_ended(call_id, 5.0)


async def tool_call(fake: FakeOpenAI, server: RunningServer) -> str:
    """The caller asks for the weather: get_weather runs, its output goes back, reply."""
    call_id, conn = await _start(fake, server)
    await conn.send(ev.input_transcription_completed(None, "What's the weather in Paris?"))
    await conn.send(ev.function_call_turn("get_weather", {"city": "Paris"}))
    await conn.expect("conversation.item.create")
    await conn.expect("response.create")
    await asyncio.sleep(0.05)
    await conn.send(ev.assistant_turn("It is sunny in Paris, 72 degrees."))
    await asyncio.sleep(0.05)
    await fake.caller_hangs_up(call_id)
    await _ended(server, call_id)
    return call_id


async def handoff_and_back(fake: FakeOpenAI, server: RunningServer) -> str:
    """Front desk hands off to Billing Support, which hands back."""
    call_id, conn = await _start(fake, server)
    await conn.send(ev.function_call_turn("transfer_to_billing_support", {}))
    await conn.expect("session.update", lambda e: "billing" in str(e).lower())
    await asyncio.sleep(0.1)
    await conn.send(ev.function_call_turn("transfer_to_customer_service", {}))
    await conn.expect("session.update", lambda e: "main customer service" in str(e))
    await asyncio.sleep(0.1)
    await fake.caller_hangs_up(call_id)
    await _ended(server, call_id)
    return call_id


async def guardrail_trip(fake: FakeOpenAI, server: RunningServer) -> str:
    """The agent starts saying a password: the output guardrail cancels the response."""
    call_id, conn = await _start(fake, server)
    text = "Sure. " + "Your account password is hunter2, " * 6
    await conn.send(ev.assistant_turn(text)[:-2])  # the response is still in progress
    await conn.expect("response.cancel", timeout=5)
    await asyncio.sleep(0.2)
    await fake.caller_hangs_up(call_id)
    await _ended(server, call_id)
    return call_id


async def barge_in(fake: FakeOpenAI, server: RunningServer) -> str:
    """The caller starts talking while the agent is mid-sentence."""
    call_id, conn = await _start(fake, server)
    turn = ev.assistant_turn("Let me tell you about all of our opening hours this week")
    await conn.send(turn[:6])  # created, item added, a few transcript deltas
    await conn.send(ev.speech_started(audio_start_ms=1200))
    await asyncio.sleep(0.1)
    response_id = turn[0]["response"]["id"]
    await conn.send(ev.response_done(response_id, status="cancelled", reason="turn_detected"))
    await conn.send(ev.speech_stopped(audio_end_ms=2400))
    await conn.send(ev.input_transcription_completed(None, "Actually, I need billing."))
    await asyncio.sleep(0.1)
    await conn.send(ev.assistant_turn("Of course, one moment."))
    await asyncio.sleep(0.05)
    await fake.caller_hangs_up(call_id)
    await _ended(server, call_id)
    return call_id


async def hangup_during_tool(fake: FakeOpenAI, server: RunningServer) -> str:
    """The caller hangs up while a (slow) tool is running: it is cancelled."""
    call_id, conn = await _start(fake, server)
    args = {"date": "2026-12-01", "time": "14:30", "service": "haircut"}
    await conn.send(ev.function_call_turn(SLOW_TOOL, args))
    await asyncio.sleep(0.2)
    await fake.caller_hangs_up(call_id)
    await _ended(server, call_id)
    return call_id


async def end_call(fake: FakeOpenAI, server: RunningServer) -> str:
    """The agent says goodbye and ends the call with the end_call tool."""
    call_id, conn = await _start(fake, server)
    await conn.send(ev.input_transcription_completed(None, "That's all, thanks. Bye!"))
    await conn.send(ev.function_call_turn("end_call", {}))
    await conn.expect("conversation.item.create")
    await _ended(server, call_id)
    return call_id


# -- GPT-Live ---------------------------------------------------------------------------------

LIVE_NUMBER = "+18005550199"
"""Routed to the Live front desk by the bundled config/routes.yaml."""


async def _start_live(fake: FakeOpenAI, server: RunningServer) -> tuple[str, FakeSideband]:
    session_id, _ = await fake.send_live_incoming(
        server.webhook_url, TEST_WEBHOOK_SECRET, to=LIVE_NUMBER
    )
    sideband = await fake.live.wait_attached(session_id)
    await asyncio.sleep(0.05)
    return session_id, sideband


def _output(e: dict[str, Any]) -> bool:
    return (e.get("item") or {}).get("type") == "function_call_output"


async def live_tool_call(fake: FakeOpenAI, server: RunningServer) -> str:
    """GPT-Live: the backend calls get_weather; the output goes back, then response.create."""
    session_id, sideband = await _start_live(fake, server)
    await fake.live.caller_says(session_id, "What's the weather in Paris?")
    await fake.live.delegate(session_id, [("get_weather", {"city": "Paris"})])
    await sideband.expect("response.item.create", _output)
    await sideband.expect("response.create")
    await fake.live.agent_says(session_id, "It is sunny in Paris, 72 degrees.")
    await asyncio.sleep(0.05)
    await fake.live.caller_hangs_up(session_id)
    await _ended(server, session_id)
    return session_id


async def live_handoff_and_back(fake: FakeOpenAI, server: RunningServer) -> str:
    """GPT-Live: the delegation switches to Billing Support, then back to the front desk."""
    session_id, sideband = await _start_live(fake, server)
    await fake.live.delegate(session_id, [("transfer_to_billing_support", {})])
    await sideband.expect("session.update", lambda e: "billing" in str(e).lower())
    await sideband.expect("response.create")
    await fake.live.delegate(session_id, [("transfer_to_customer_service", {})])
    await sideband.expect("session.update", lambda e: "main customer service" in str(e))
    await sideband.expect("response.create")
    await asyncio.sleep(0.05)
    await fake.live.caller_hangs_up(session_id)
    await _ended(server, session_id)
    return session_id


async def live_guardrail_trip(fake: FakeOpenAI, server: RunningServer) -> str:
    """GPT-Live: the agent starts saying a password; the guardrail tells it to stop."""
    session_id, sideband = await _start_live(fake, server)
    text = "Sure. " + "Your account password is hunter2, " * 5
    await fake.live.agent_says(session_id, text, parts=4)
    await sideband.expect("session.instructions.append", lambda e: "Stop" in e["content"])
    await sideband.expect("response.create")
    await asyncio.sleep(0.1)
    await fake.live.caller_hangs_up(session_id)
    await _ended(server, session_id)
    return session_id


async def live_dtmf_and_end_call(fake: FakeOpenAI, server: RunningServer) -> str:
    """GPT-Live: a key press reaches the agent; then end_call after the goodbye."""
    session_id, sideband = await _start_live(fake, server)
    await fake.live.press(session_id, "5")
    await sideband.expect("response.create")
    await fake.live.delegate(session_id, [("end_call", {})])
    await sideband.expect("response.item.create", _output)
    await sideband.expect("response.create")
    await fake.live.agent_says(session_id, "Thanks for calling, goodbye!")
    await _ended(server, session_id)
    return session_id


async def live_hangup_during_tool(fake: FakeOpenAI, server: RunningServer) -> str:
    """GPT-Live: the caller hangs up while a slow tool runs: it is cancelled."""
    session_id, _ = await _start_live(fake, server)
    args = {"date": "2026-12-01", "time": "14:30", "service": "haircut"}
    await fake.live.delegate(session_id, [(SLOW_TOOL, args)])
    await asyncio.sleep(0.2)
    await fake.live.caller_hangs_up(session_id)
    await _ended(server, session_id)
    return session_id


SCENARIOS: dict[str, Scenario] = {
    "tool_call": tool_call,
    "handoff_and_back": handoff_and_back,
    "guardrail_trip": guardrail_trip,
    "barge_in": barge_in,
    "hangup_during_tool": hangup_during_tool,
    "end_call": end_call,
    "live_tool_call": live_tool_call,
    "live_handoff_and_back": live_handoff_and_back,
    "live_guardrail_trip": live_guardrail_trip,
    "live_dtmf_and_end_call": live_dtmf_and_end_call,
    "live_hangup_during_tool": live_hangup_during_tool,
}
"""Name -> scenario; the name becomes ``tests/replays/<name>.cassette.jsonl``."""
