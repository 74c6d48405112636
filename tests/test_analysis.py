"""Post-call analysis pieces: transcript redaction, the request and the answer's check, the
Responses client against the fake (real sockets), and the durable queue across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from callserver.calls.records import CallRecord, CallState
from callserver.graph import load_config
from callserver.graph.analysis_models import PostCallPlan, RedactionRule
from callserver.metrics import Metrics
from callserver.records import analysis
from callserver.records.analysis import AnalysisJob, parse_answer, request_body
from callserver.records.analysis_queue import AnalysisQueue, PostCallEvents
from callserver.records.outbox import Outbox
from callserver.records.pii import kinds, transcript_redactor
from callserver.records.post_call import build_call_ended_event
from callserver.records.post_call_service import prepare_events
from callserver.records.responses_client import AnalysisFailure, ResponsesClient
from callserver.testing.fake_calls import error_body
from callserver.testing.fake_responses import FakeResponses, example_for
from callserver.testing.harness import free_port
from callserver.testing.responses_schemas import response_errors
from tests.analysis_support import POSTCALL_SECRET
from tests.conftest import DEFAULT_CONFIG

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.02}
KEY = "sk-test-analysis-key-0123456789"


@pytest.fixture(scope="module")
def plan() -> Any:
    graph = load_config(DEFAULT_CONFIG, env={}).graphs["frontdesk"]
    assert graph.post_call.analysis is not None
    return graph.post_call.analysis


def ended_data(**extra: Any) -> dict[str, Any]:
    record = CallRecord(call_id="rtc_unit", caller="+14155550100", dialed="+18005551212")
    record.graph, record.route = "frontdesk", "default"
    record.transition(CallState.ACCEPTING)
    record.transition(CallState.ACTIVE)
    record.transcript.append(
        {"role": "caller", "agent": "Customer Service", "text": "hi", "at": 1.0}
    )
    record.transition(CallState.ENDING)
    record.end_reason = "caller_hangup"
    record.transition(CallState.ENDED)
    data = build_call_ended_event(record, redact_numbers=False)["data"]
    data.update(extra)
    return data


# ---- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
        ("one digit off 4111-1111-1111-1112", "one digit off [card]"),
        ("call +1 (415) 555-0123 or 415.555.0123", "call [phone] or [phone]"),
        ("book 2026-12-01 at 14:30, order 12345", "book 2026-12-01 at 14:30, order 12345"),
        ("jane.doe@example.com / jane dot doe at example dot com", "[email] / [email]"),
        ("meet at noon dot ok", "meet at noon dot ok"),
        ("account ACC-123456", "account [account]"),
        (f"my key is {KEY}", "my key is [redacted]"),
    ],
)
def test_transcript_redaction(text: str, expected: str) -> None:
    rules = (*kinds(["card", "phone", "email"]), RedactionRule("custom", r"ACC-\d{6}", "[account]"))
    assert transcript_redactor(rules, secrets=[KEY]).scrub(text) == expected


def test_kinds_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown kind 'mail'"):
        kinds(["card", "mail"])


def test_prepare_redacts_the_event_and_the_request_alike(plan: Any) -> None:
    data = ended_data()
    data["transcript"] = [{"role": "caller", "text": "I'm +14155550100, card 4242424242424242"}]
    event = {"type": "call.ended", "data": data}
    prepared = prepare_events(
        event,
        plan=PostCallPlan(analysis=plan),
        rules=kinds(["card"]),
        secrets=["+14155550100"],
        analyse=True,
    )
    assert prepared.event["data"]["transcript"][0]["text"] == "I'm [redacted], card [card]"
    assert prepared.job is not None
    sent = json.loads(prepared.job.request["input"][0]["content"][0]["text"])
    assert sent["transcript"][0]["text"] == "I'm [redacted], card [card]"
    assert prepared.event["data"]["analysis"] == {
        "status": "pending",
        "webhook_id": prepared.job.webhook_id,
    }


# ---- the request and the answer -------------------------------------------------------------


def test_request_and_its_schema(plan: Any) -> None:
    body = request_body(plan, ended_data())
    schema = body["text"]["format"]["schema"]
    assert schema["required"] == ["summary", "fields", "success"]
    fields = schema["properties"]["fields"]
    assert fields["required"] == ["reason", "appointment_booked", "appointment", "follow_up"]
    assert fields["additionalProperties"] is False
    assert fields["properties"]["appointment"]["anyOf"][1] == {"type": "null"}
    assert fields["properties"]["reason"]["enum"][0] == "weather"
    Draft202012Validator.check_schema(schema)
    sent = json.loads(body["input"][0]["content"][0]["text"])
    assert sent["call"]["end_reason"] == "caller_hangup"
    assert "caller" not in sent["call"] and "+1415" not in json.dumps(sent)


def test_long_transcripts_lose_middle_turns(monkeypatch: pytest.MonkeyPatch, plan: Any) -> None:
    monkeypatch.setattr(analysis, "MAX_TRANSCRIPT_CHARS", 1000)
    turns = [{"role": "caller", "text": f"{i:03d}" + "x" * 97} for i in range(50)]
    sent = analysis.analysis_input(ended_data(transcript=turns))["transcript"]
    texts = [t["text"] for t in sent]
    assert texts[0].startswith("000") and texts[-1].startswith("049")
    assert sum(len(t) for t in texts if not t.startswith("[")) <= 1000
    assert any("turns left out" in t for t in texts)


def test_parse_answer(plan: Any) -> None:
    schema = dict(plan.output_schema)
    good = example_for(schema)
    assert parse_answer(json.dumps(good), schema) == good
    with pytest.raises(AnalysisFailure) as not_json:
        parse_answer("{", schema)
    assert not_json.value.code == "invalid_output"
    bad = {**good, "fields": {**good["fields"], "appointment_booked": "yes"}}
    with pytest.raises(AnalysisFailure, match="fields/appointment_booked"):
        parse_answer(json.dumps(bad), schema)


# ---- the fake and the client ----------------------------------------------------------------


async def test_fake_refuses_what_the_api_refuses(plan: Any) -> None:
    body = request_body(plan, ended_data())
    async with FakeResponses() as fake, ResponsesClient(fake.base_url, KEY, **FAST) as client:
        assert await client.create(body, timeout_s=2, max_attempts=1)
        for broken in (
            {**body, "response_format": {"type": "json_object"}},  # Chat Completions' name
            {**body, "input": [{"role": "user", "content": [{"type": "input_txt", "text": "x"}]}]},
            {
                **body,
                "text": {"format": {**body["text"]["format"], "schema": {"type": "object"}}},
            },
        ):
            with pytest.raises(AnalysisFailure) as refused:
                await client.create(broken, timeout_s=2, max_attempts=3)
            assert refused.value.status == 400 and refused.value.attempts == 1
        assert len(fake.schema_errors) == 3
        assert "response_format" in fake.schema_errors[0][0]
        assert any("additionalProperties" in e for e in fake.schema_errors[2])


async def test_fake_answers_are_valid_responses(plan: Any) -> None:
    """What the fake answers parses as the SDK's ``Response``: answer, refusal, incomplete."""
    body = request_body(plan, ended_data())
    url = ""
    async with FakeResponses() as fake, httpx.AsyncClient() as http:
        url = f"{fake.base_url}/responses"
        fake.refuse()
        fake.incomplete()
        auth = {"authorization": "Bearer x"}
        for _ in range(3):
            answered = (await http.post(url, json=body, headers=auth)).json()
            assert response_errors(answered) == []
        unauthorised = await http.post(url, json=body)
    assert unauthorised.status_code == 401
    assert "API key" in unauthorised.json()["error"]["message"]


async def test_client_failures(plan: Any) -> None:
    body = request_body(plan, ended_data())
    async with FakeResponses() as fake, ResponsesClient(fake.base_url, KEY, **FAST) as client:
        fake.refuse("no")
        fake.incomplete("max_output_tokens")
        fake.fail(401, body=error_body(f"Incorrect API key provided: {KEY}"))
        fake.fail(400, body=error_body(f"Bad thing near {KEY}"))
        codes = []
        for _ in range(4):
            with pytest.raises(AnalysisFailure) as failed:
                await client.create(body, timeout_s=2, max_attempts=3)
            assert KEY not in str(failed.value.as_dict())
            codes.append((failed.value.code, failed.value.attempts))
        assert codes == [("refusal", 1), ("incomplete", 1), ("http_error", 1), ("http_error", 1)]
        assert len(fake.requests) == 4  # none of these is retried

        fake.delay(5, times=2)  # slower than the timeout, twice
        started = time.monotonic()
        with pytest.raises(AnalysisFailure) as slow:
            await client.create(body, timeout_s=0.2, max_attempts=2)
        assert slow.value.code == "timeout" and slow.value.attempts == 2
        assert time.monotonic() - started < 2
        fake.release_delays()

        fake.fail(429, retry_after=0.3)
        started = time.monotonic()
        answer = await client.create(body, timeout_s=2, max_attempts=2)
        assert answer.attempts == 2 and time.monotonic() - started >= 0.3  # Retry-After kept


async def test_network_errors_are_retried_then_reported(plan: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    retries: list[int] = []
    async with ResponsesClient(url, KEY, on_retry=lambda: retries.append(1), **FAST) as client:
        with pytest.raises(AnalysisFailure) as failed:
            await client.create(request_body(plan, ended_data()), timeout_s=1, max_attempts=3)
    assert failed.value.code == "network_error" and failed.value.attempts == 3
    assert len(retries) == 2


# ---- the durable queue ----------------------------------------------------------------------


def job_for(plan: Any, call_id: str = "rtc_q") -> PostCallEvents:
    data = ended_data(call_id=call_id)
    job = AnalysisJob.create(data, plan, "msg_ended")
    return PostCallEvents({"type": "call.ended", "data": data}, "msg_ended_" + call_id, job)


def stored(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def queue_on(path: Path, fake: FakeResponses, **kwargs: Any) -> tuple[Outbox, AnalysisQueue]:
    outbox = Outbox(path, ["http://127.0.0.1:9/hooks"], POSTCALL_SECRET, idle_poll_s=60)
    queue = AnalysisQueue(outbox, ResponsesClient(fake.base_url, KEY, **FAST), **kwargs)
    await queue.start()  # the outbox worker is not started: rows stay to be read
    return outbox, queue


async def test_a_stopped_queue_resumes_its_jobs(plan: Any, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with FakeResponses() as fake:
        fake.delay(30)
        outbox, queue = await queue_on(path, fake, close_grace_s=0.05)
        queue.submit(lambda: job_for(plan))
        await fake.wait_requests(1)
        await queue.aclose()  # the request in flight is cancelled; the job stays
        await outbox.aclose()
        assert stored(path, "SELECT event_type FROM outbox") == [("call.ended",)]
        assert stored(path, "SELECT runs FROM analysis_jobs") == [(1,)]

        fake.release_delays()
        metrics = Metrics()
        outbox, queue = await queue_on(path, fake, metrics=metrics)
        async with asyncio.timeout(5):
            while await queue.pending_count():
                await asyncio.sleep(0.01)
        await queue.aclose()
        await outbox.aclose()
    rows = stored(path, "SELECT webhook_id, event_type, body FROM outbox ORDER BY id")
    assert [r[1] for r in rows] == ["call.ended", "call.analyzed"]
    analyzed = json.loads(rows[1][2])
    assert rows[1][0] == job_for(plan).job.webhook_id  # type: ignore[union-attr]
    assert analyzed["data"]["status"] == "completed"
    assert len(fake.requests) == 2 and fake.requests[0].json == fake.requests[1].json


async def test_a_job_interrupted_too_often_is_reported_failed(plan: Any, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with FakeResponses() as fake:
        outbox, queue = await queue_on(path, fake, max_runs=2)
        await queue.aclose()
        await outbox.enqueue({"type": "noop"}, webhook_id="msg_x")  # make sure the table exists
        job = job_for(plan).job
        assert job is not None
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO analysis_jobs VALUES (?, ?, ?, ?, ?, 2)",
            (job.webhook_id, job.call_id, json.dumps(job.request), json.dumps(job.context), 1.0),
        )
        conn.commit()
        conn.close()
        await outbox.aclose()
        outbox, queue = await queue_on(path, fake, max_runs=2)
        async with asyncio.timeout(5):
            while await queue.pending_count():
                await asyncio.sleep(0.01)
        await queue.aclose()
        await outbox.aclose()
        assert fake.requests == []
    [(body,)] = stored(path, "SELECT body FROM outbox WHERE event_type = 'call.analyzed'")
    data = json.loads(body)["data"]
    assert data["status"] == "failed" and data["error"]["code"] == "interrupted"


def test_analysis_metrics_labels_are_bounded() -> None:
    metrics = Metrics()
    metrics.analysis_finished("completed", 1.2)
    metrics.analysis_finished("something-new", 0.1)
    body = metrics.exposition()[0].decode()
    assert 'callserver_analyses_total{outcome="completed"} 1.0' in body
    assert 'callserver_analyses_total{outcome="other"} 1.0' in body
    assert 'callserver_analysis_duration_seconds_count{result="failed"} 1.0' in body
