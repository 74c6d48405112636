"""Post-call analysis end to end: real callserver, fake OpenAI (Realtime + Responses) and a
signed-event receiver, all on loopback sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer
from callserver.testing.postcall_receiver import PostCallReceiver
from tests.analysis_support import analysis_block, postcall_settings, write_graph
from tests.conftest import DEFAULT_CONFIG, StartServer
from tests.e2e import ended_record, place_call, place_live_call, wait_for
from tests.test_operations import scrape, value

CARD = "4111 1111 1111 1111"
RESULT = {
    "summary": "The caller asked about the weather in Paris and got an answer.",
    "fields": {
        "reason": "weather",
        "appointment_booked": False,
        "appointment": None,
        "follow_up": None,
    },
    "success": {"achieved": True, "reason": "The weather question was answered."},
}


@pytest.fixture
def start_with_events(
    start_callserver: StartServer, receiver: PostCallReceiver, tmp_path: Path
) -> StartServer:
    """Like ``start_callserver``, with post-call events (and so analysis) on."""

    async def start(config: Path = DEFAULT_CONFIG, **overrides: Any) -> RunningServer:
        return await start_callserver(config, **postcall_settings(receiver, tmp_path), **overrides)

    return start


async def talk_and_hang_up(server: RunningServer, fake: FakeOpenAI, *, tool: bool = True) -> str:
    """A short answered call: the caller speaks (with a card number and an e-mail), an
    optional tool call, the agent answers, the caller hangs up."""
    call_id, _ = await place_call(server, fake)
    conn = await fake.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.send(
        ev.input_transcription_completed(
            None, f"Weather in Paris? My card is {CARD}, mail jane@example.com"
        )
    )
    if tool:
        await conn.send(ev.function_call_turn("get_weather", {"city": "Paris"}))
        await conn.expect(
            "conversation.item.create", lambda e: e["item"].get("type") == "function_call_output"
        )
    await conn.send(ev.assistant_turn("It is sunny in Paris."))
    await fake.caller_hangs_up(call_id)
    await ended_record(server, call_id)
    return call_id


def analysis_input(request: Any) -> dict[str, Any]:
    [message] = request.json["input"]
    return json.loads(message["content"][0]["text"])


async def test_call_ends_then_analysis_is_requested_and_delivered(
    start_with_events: StartServer, fake_openai: FakeOpenAI, receiver: PostCallReceiver
) -> None:
    server = await start_with_events()
    fake_openai.responses.delay(0.5)  # a slow analysis must not hold anything up
    fake_openai.responses.answer(RESULT)
    call_id = await talk_and_hang_up(server, fake_openai)

    # The call is over, its slot free and its call.ended out before the analysis answers.
    assert server.services.manager.active_count == 0
    [(ended, ended_headers)] = await receiver.wait("call.ended", timeout=2)
    [request] = await fake_openai.responses.wait_requests(1)
    assert request.status == 0  # still being answered
    assert ended["data"]["analysis"]["status"] == "pending"
    assert CARD not in json.dumps(ended) and "jane@example.com" not in json.dumps(ended)
    assert ended["data"]["transcript_redactions"] == ["card", "email"]

    [(analyzed, headers)] = await receiver.wait("call.analyzed")
    assert fake_openai.responses.schema_errors == []
    body = request.json
    graph = server.services.config.current.graphs["frontdesk"]
    assert graph.post_call.analysis is not None
    assert body["model"] == "gpt-4.1-mini"
    assert body["store"] is False
    assert body["text"]["format"] == {
        "type": "json_schema",
        "name": "call_analysis",
        "schema": dict(graph.post_call.analysis.output_schema),
        "strict": True,
    }
    assert "The front desk answers general questions" in body["instructions"]
    sent = analysis_input(request)
    assert sent["call"]["end_reason"] == "caller_hangup"
    assert [t["name"] for t in sent["call"]["tool_calls"]] == ["get_weather"]
    caller_turn = sent["transcript"][0]
    assert caller_turn["role"] == "caller"
    assert caller_turn["text"] == "Weather in Paris? My card is [card], mail [email]"
    assert "+1425" not in request.json["input"][0]["content"][0]["text"]  # no numbers sent

    data = analyzed["data"]
    assert headers["webhook-id"] == ended["data"]["analysis"]["webhook_id"]
    assert data["call_ended_webhook_id"] == ended_headers["webhook-id"]
    assert data["call_id"] == call_id and data["graph"] == "frontdesk"
    assert data["status"] == "completed" and data["error"] is None
    assert data["result"] == RESULT
    assert data["attempts"] == 1 and data["response_id"].startswith("resp_")
    assert data["usage"]["total_tokens"] > 0
    record = await server.services.manager.registry.get(call_id)
    assert record is not None and record.analysis is not None
    assert record.analysis["status"] == "completed" and record.analysis["result"] == RESULT

    samples = await scrape(server)
    assert value(samples, "callserver_analyses_total", outcome="completed") == 1
    assert value(samples, "callserver_analysis_duration_seconds_count", result="completed") == 1
    assert await server.services.analysis.pending_count() == 0


async def test_server_errors_are_retried_then_reported_as_failed(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    config = write_graph(tmp_path, attempts=3)
    server = await start_with_events(config)
    fake_openai.responses.fail(500, times=3, retry_after=0)
    call_id = await talk_and_hang_up(server, fake_openai, tool=False)
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    data = analyzed["data"]
    assert data["call_id"] == call_id
    assert data["status"] == "failed" and data["result"] is None
    assert data["error"]["code"] == "http_error" and data["error"]["status"] == 500
    assert data["error"]["attempts"] == 3 == data["attempts"]
    assert "HTTP 500 (server_error)" in data["error"]["message"]
    assert len(fake_openai.responses.requests) == 3
    samples = await scrape(server)
    assert value(samples, "callserver_analyses_total", outcome="http_error") == 1
    assert value(samples, "callserver_analysis_retries_total") == 2
    assert value(samples, "callserver_analysis_duration_seconds_count", result="failed") == 1


async def test_a_retry_that_succeeds(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    server = await start_with_events(write_graph(tmp_path))
    fake_openai.responses.fail(429, retry_after=0)  # then the fake's default: a valid answer
    await talk_and_hang_up(server, fake_openai, tool=False)
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    data = analyzed["data"]
    assert data["status"] == "completed" and data["attempts"] == 2
    assert set(data["result"]) == {"summary", "fields", "success"}
    assert set(data["result"]["fields"]) == {"reason", "callback_number"}


async def test_an_answer_that_breaks_the_schema_is_reported_as_failed(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    server = await start_with_events(write_graph(tmp_path))
    bad = {
        "summary": "ok",
        "fields": {"reason": "weather", "callback_number": None},  # not in the enum
        "success": {"achieved": True, "reason": "ok"},
    }
    fake_openai.responses.answer(bad)
    await talk_and_hang_up(server, fake_openai, tool=False)
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    data = analyzed["data"]
    assert data["status"] == "failed" and data["result"] is None
    assert data["error"]["code"] == "invalid_output"
    assert "fields/reason" in data["error"]["message"]
    assert len(fake_openai.responses.requests) == 1  # not retried: the model answered
    samples = await scrape(server)
    assert value(samples, "callserver_analyses_total", outcome="invalid_output") == 1


async def test_no_analysis_block_no_request(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    config = write_graph(tmp_path, analysis=False, extra="redact: [phone]\n")
    server = await start_with_events(config)
    await talk_and_hang_up(server, fake_openai, tool=False)
    [(ended, _)] = await receiver.wait("call.ended")
    assert ended["data"]["analysis"] is None
    assert ended["data"]["transcript_redactions"] == ["phone"]
    assert CARD in ended["data"]["transcript"][0]["text"]  # only phone numbers are hidden
    # A job would have been committed with call.ended, in the same transaction.
    assert await server.services.analysis.pending_count() == 0
    assert fake_openai.responses.requests == []


async def test_a_call_never_answered_is_not_analysed(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    server = await start_with_events(write_graph(tmp_path))
    fake_openai.fail("accept", 404)  # the caller hung up while it rang
    call_id, _ = await place_call(server, fake_openai)
    record = await ended_record(server, call_id)
    assert record.end_reason == "caller_gone"
    [(ended, _)] = await receiver.wait("call.ended")
    assert ended["data"]["analysis"] is None
    await wait_for(lambda: record.analysis is None)
    assert fake_openai.responses.requests == []


LIVE_GRAPH = """\
name: live_desk
engine: live
start: desk
live:
  backend_model: gpt-5-mini
  turn_gap: 0.1s
agents:
  desk:
    instructions: You answer calls for a test business.
    tools: [end_call]
"""


async def test_a_gpt_live_call_is_analysed_the_same_way(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    """The analysis reads the call record, whatever engine filled it."""
    config = tmp_path / "live_desk.yaml"
    config.write_text(LIVE_GRAPH + analysis_block() + "redact: [card]\n")
    server = await start_with_events(config)
    live = fake_openai.live
    session_id, _ = await place_live_call(server, fake_openai)
    await live.wait_attached(session_id)
    await live.caller_says(session_id, f"My card is {CARD}, I have a billing question.")
    await asyncio.sleep(0.2)  # the turn gap: the caller's turn is over
    await live.agent_says(session_id, "Billing can help you with that.")
    await asyncio.sleep(0.2)
    await live.caller_hangs_up(session_id)
    record = await ended_record(server, session_id, timeout=10)
    assert record.engine == "live"
    [(analyzed, _)] = await receiver.wait("call.analyzed")
    assert analyzed["data"]["status"] == "completed" and analyzed["data"]["graph"] == "live_desk"
    [request] = fake_openai.responses.requests
    sent = analysis_input(request)
    assert [(t["role"], t["text"]) for t in sent["transcript"]] == [
        ("caller", "My card is [card], I have a billing question."),
        ("agent", "Billing can help you with that."),
    ]
    assert sent["call"]["end_reason"] == record.end_reason


async def test_cassettes_follow_the_recording_settings_not_redact(
    start_with_events: StartServer,
    fake_openai: FakeOpenAI,
    receiver: PostCallReceiver,
    tmp_path: Path,
) -> None:
    """``redact:`` is about what leaves the process; a cassette is what the operator chose
    to record (CALLSERVER_RECORDING_REDACT), so it still replays the call as it was."""
    recordings = tmp_path / "recordings"
    server = await start_with_events(recording_mode="on", recording_dir=recordings)
    await talk_and_hang_up(server, fake_openai, tool=False)
    [(ended, _)] = await receiver.wait("call.ended")
    assert "[card]" in ended["data"]["transcript"][0]["text"]
    [cassette] = recordings.rglob("*.cassette.jsonl")
    assert CARD in cassette.read_text()


async def test_analysis_needs_post_call_receivers(
    start_callserver: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="callserver.records.post_call_service"):
        server = await start_callserver()
    assert server.services.analysis is None and server.services.outbox is None
    assert "['frontdesk'] have an analysis: block but CALLSERVER_POSTCALL_URLS" in caplog.text
