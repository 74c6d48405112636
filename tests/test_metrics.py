"""Metrics: values as a scraper sees them, parsed from the exposition text."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callserver.calls.records import CallRecord, CallState, ToolCall
from callserver.metric_labels import call_outcome
from callserver.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def ended_record(
    call_id: str,
    *,
    graph: str | None = "frontdesk",
    reason: str = "caller_hangup",
    accepted: bool = True,
) -> CallRecord:
    record = CallRecord(call_id=call_id, caller="+15551234567", dialed="+15557654321")
    record.graph = graph
    record.created_mono = time.monotonic() - 42.0
    if accepted:
        record.transition(CallState.ACCEPTING)
        record.transition(CallState.ACTIVE)
    record.transition(CallState.ENDING)
    record.end_reason = reason
    record.transition(CallState.ENDED)
    return record


def test_own_registry_per_instance() -> None:
    a, b = Metrics(), Metrics()
    a.duplicate_delivery()
    assert value(a, "callserver_webhook_duplicates_total") == 1
    assert value(b, "callserver_webhook_duplicates_total") == 0


def test_names_follow_conventions() -> None:
    body, _ = Metrics().exposition()
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("callserver_")
        if family.type == "counter":
            assert any(s.name.endswith("_total") for s in family.samples) or not family.samples
        if family.type == "histogram":
            assert family.name.endswith("_seconds")


def test_scripted_call() -> None:
    m = Metrics(tools=["lookup_order"])
    m.call_started("frontdesk", "rtc_1")
    m.accept_latency(0.12)
    assert value(m, "callserver_calls_active", graph="frontdesk") == 1

    record = ended_record("rtc_1", reason="agent_end_call")
    record.tool_calls.append(
        ToolCall(name="lookup_order", agent="triage", started_at=0.0, duration_s=0.3, outcome="ok")
    )
    record.tool_calls.append(ToolCall(name="lookup_order", agent="triage", started_at=0.0))
    record.handoffs = 2
    record.guardrail_trips = 1
    m.call_ended(record, cleanup_s=0.004)
    m.call_ended(record)  # a second report of the same call must not drive the gauge negative

    assert value(m, "callserver_calls_active", graph="frontdesk") == 0
    assert value(m, "callserver_calls_started_total", graph="frontdesk") == 1
    labels = {"graph": "frontdesk", "outcome": "completed", "end_reason": "agent_end_call"}
    assert value(m, "callserver_calls_ended_total", **labels) == 2
    assert value(m, "callserver_accept_latency_seconds_count") == 1
    assert value(m, "callserver_accept_latency_seconds_sum") == pytest.approx(0.12)
    assert value(m, "callserver_accept_latency_seconds_bucket", le="0.1") == 0
    assert value(m, "callserver_accept_latency_seconds_bucket", le="0.15") == 1
    assert value(m, "callserver_accept_latency_seconds_bucket", le="5.0") == 1
    assert value(m, "callserver_hangup_cleanup_seconds_count") == 1
    assert value(m, "callserver_hangup_cleanup_seconds_bucket", le="0.005") == 1
    # Only the finished tool call is observed; details were counted once per report.
    tool = {"tool": "lookup_order", "outcome": "ok"}
    assert value(m, "callserver_tool_duration_seconds_count", **tool) == 2
    assert value(m, "callserver_tool_duration_seconds_bucket", le="0.25", **tool) == 0
    assert value(m, "callserver_tool_duration_seconds_bucket", le="0.5", **tool) == 2
    assert value(m, "callserver_handoffs_total", graph="frontdesk") == 4
    assert value(m, "callserver_guardrail_trips_total", graph="frontdesk") == 2
    assert value(m, "callserver_call_duration_seconds_bucket", graph="frontdesk", le="30.0") == 0
    assert value(m, "callserver_call_duration_seconds_bucket", graph="frontdesk", le="60.0") == 2


def test_live_reporting_without_record_details() -> None:
    m = Metrics()
    m.call_started("sales", "rtc_2")
    m.tool_finished("quote", "error", 12.0)
    m.handoff("sales")
    m.guardrail_tripped("sales")
    record = ended_record("rtc_2", graph="sales")
    record.handoffs = 1
    record.tool_calls.append(ToolCall(name="quote", agent="a", started_at=0.0, duration_s=12.0))
    m.call_ended(record, include_details=False)
    quote = {"tool": "quote", "outcome": "error"}
    assert value(m, "callserver_tool_duration_seconds_count", **quote) == 1
    assert value(m, "callserver_tool_duration_seconds_bucket", le="10.0", **quote) == 0
    assert value(m, "callserver_tool_duration_seconds_bucket", le="20.0", **quote) == 1
    assert value(m, "callserver_handoffs_total", graph="sales") == 1
    assert value(m, "callserver_guardrail_trips_total", graph="sales") == 1


def test_outcomes() -> None:
    assert call_outcome(ended_record("a", reason="rejected:capacity", accepted=False)) == (
        "rejected"
    )
    assert call_outcome(ended_record("b", reason="caller_gone", accepted=False)) == "abandoned"
    assert call_outcome(ended_record("c", reason="accept_failed", accepted=False)) == "failed"
    assert call_outcome(ended_record("d", reason="internal_error")) == "failed"
    assert call_outcome(ended_record("e", reason="max_duration")) == "completed"


def test_unbounded_values_map_to_other() -> None:
    m = Metrics(max_tools=1)
    m.call_ended(ended_record("rtc_3", graph=None, reason="something new"))
    labels = {"graph": "none", "outcome": "completed", "end_reason": "other"}
    assert value(m, "callserver_calls_ended_total", **labels) == 1

    m.allow_end_reasons(["transfer_to_billing"])
    m.call_ended(ended_record("rtc_4", reason="transfer_to_billing"))
    labels = {"graph": "frontdesk", "outcome": "completed", "end_reason": "transfer_to_billing"}
    assert value(m, "callserver_calls_ended_total", **labels) == 1

    m.tool_finished("first", "ok", 0.1)
    m.tool_finished("second", "ok", 0.1)
    m.tool_finished("+15551234567 free text", "weird outcome", 0.1)
    assert value(m, "callserver_tool_duration_seconds_count", tool="first", outcome="ok") == 1
    assert value(m, "callserver_tool_duration_seconds_count", tool="other", outcome="ok") == 1
    assert value(m, "callserver_tool_duration_seconds_count", tool="other", outcome="other") == 1


def test_no_numbers_or_call_ids_in_exposition() -> None:
    m = Metrics()
    m.call_started("frontdesk", "rtc_secret_id")
    m.call_ended(ended_record("rtc_secret_id"))
    body, _ = m.exposition()
    assert b"rtc_secret_id" not in body
    assert b"5551234567" not in body


def test_counters_and_gauges() -> None:
    m = Metrics()
    m.webhook_rejected("bad_signature")
    m.webhook_rejected("bad_signature")
    m.webhook_rejected("stale")
    m.duplicate_delivery()
    m.control_retry("accept")
    m.session_error("rate_limit_exceeded")
    m.admission_rejected("capacity")
    m.postcall_delivery("retry")
    m.postcall_delivery("delivered")
    assert value(m, "callserver_webhook_rejected_total", reason="bad_signature") == 2
    assert value(m, "callserver_webhook_rejected_total", reason="stale") == 1
    assert value(m, "callserver_webhook_duplicates_total") == 1
    assert value(m, "callserver_control_retries_total", action="accept") == 1
    assert value(m, "callserver_session_errors_total", code="rate_limit_exceeded") == 1
    assert value(m, "callserver_admission_rejected_total", reason="capacity") == 1
    assert value(m, "callserver_postcall_deliveries_total", result="retry") == 1
    assert value(m, "callserver_postcall_deliveries_total", result="delivered") == 1
    assert value(m, "callserver_draining") == 0
    m.set_draining(True)
    assert value(m, "callserver_draining") == 1
    m.set_draining(False)
    assert value(m, "callserver_draining") == 0


def test_openmetrics_negotiation() -> None:
    m = Metrics()
    body, content_type = m.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
