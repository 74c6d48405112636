"""The ``call.ended`` event: content, number redaction, and the end listener."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from callserver.calls.records import CallRecord, CallState, ToolCall
from callserver.records.outbox import Outbox
from callserver.records.post_call import (
    build_call_ended_event,
    call_ended_listener,
    event_webhook_id,
    last4,
)

SECRET = "whsec_" + base64.b64encode(b"post-call-test-secret-32-bytes!!").decode()


def finished_call() -> CallRecord:
    record = CallRecord(
        call_id="rtc_abc",
        caller="+1 (555) 123-4567",
        dialed="+15557654321",
        twilio_call_sid="CA123",
    )
    record.graph = "frontdesk"
    record.route = "main"
    record.created_mono = time.monotonic() - 65.0
    record.transition(CallState.ACCEPTING)
    record.transition(CallState.ACTIVE)
    record.accepted_mono = record.created_mono + 1.5
    record.visit("triage")
    record.visit("billing")
    record.handoffs = 1
    record.tool_calls.append(
        ToolCall(
            name="lookup_invoice",
            agent="billing",
            started_at=record.created_mono + 20.0,
            duration_s=0.8,
            outcome="ok",
        )
    )
    record.usage = {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500}
    record.transition(CallState.ENDING)
    record.end_reason = "agent_end_call"
    record.transition(CallState.ENDED)
    return record


def test_event_content() -> None:
    event = build_call_ended_event(finished_call(), redact_numbers=False)
    json.dumps(event)  # JSON-ready as is
    assert event["type"] == "call.ended"
    data = event["data"]
    assert data["call_id"] == "rtc_abc"
    assert data["caller"] == "+1 (555) 123-4567" and data["dialed"] == "+15557654321"
    assert data["graph"] == "frontdesk"
    assert data["agents_visited"] == ["triage", "billing"]
    assert data["final_agent"] == "billing"
    assert data["end_reason"] == "agent_end_call"
    assert data["usage"] == {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500}
    [tool] = data["tool_calls"]
    assert tool == {
        "name": "lookup_invoice",
        "agent": "billing",
        "started_offset_s": 20.0,
        "duration_s": 0.8,
        "outcome": "ok",
    }
    durations = data["durations"]
    assert durations["ring_s"] == 1.5
    assert 64.9 < durations["total_s"] < 66
    assert abs(durations["total_s"] - durations["ring_s"] - durations["talk_s"]) < 0.01
    assert data["transcript"] == []
    assert event["timestamp"] == data["ended_at"]


def test_numbers_redacted() -> None:
    event = build_call_ended_event(finished_call(), redact_numbers=True)
    data = event["data"]
    assert data["caller"] is None and data["dialed"] is None
    assert data["caller_last4"] == "4567" and data["dialed_last4"] == "4321"
    assert data["numbers_redacted"] is True
    assert "555" not in json.dumps(event)
    assert last4(None) is None and last4("anonymous") is None


def test_transcript_read_when_the_record_has_one() -> None:
    class Turn:
        def __init__(self, role: str, text: str) -> None:
            self.role, self.text, self.agent = role, text, "triage"

    class WithTranscript:
        def __init__(self, record: CallRecord, turns: list[Any]) -> None:
            self._record, self.transcript = record, turns

        def __getattr__(self, name: str) -> Any:
            return getattr(self._record, name)

    record: Any = WithTranscript(
        finished_call(), [{"role": "user", "text": "hi", "at": 1.0}, Turn("assistant", "hello")]
    )
    data = build_call_ended_event(record, redact_numbers=True)["data"]
    assert data["transcript"] == [
        {"role": "user", "text": "hi", "at": 1.0},
        {"role": "assistant", "agent": "triage", "text": "hello"},
    ]


async def test_listener_enqueues_once_per_call(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, ["http://receiver.invalid/hooks"], SECRET)
    redact = True
    listener = call_ended_listener(outbox, redact_numbers=lambda: redact)
    record = finished_call()
    listener(record)
    listener(record)  # reported twice: still one event (deterministic webhook id)
    await outbox.aclose()  # waits for the submitted enqueues
    conn = sqlite3.connect(path)
    [(webhook_id, body)] = conn.execute("SELECT webhook_id, body FROM outbox").fetchall()
    conn.close()
    assert webhook_id == event_webhook_id("rtc_abc")
    assert json.loads(body)["data"]["caller"] is None
