"""Operating callserver: /metrics after a scripted call, post-call events, health."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from svix.webhooks import Webhook

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer
from tests.e2e import ended_record, place_call, wait_for

POSTCALL_SECRET = "whsec_" + "cG9zdGNhbGwtdGVzdC1zZWNyZXQtbm90LXJlYWwtMTIzNA=="


async def scrape(server: RunningServer) -> dict[tuple[str, tuple], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/metrics")
    assert response.status_code == 200
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_a_scripted_call(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    call_id, _ = await place_call(callserver, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    during = await scrape(callserver)
    assert value(during, "callserver_calls_active", graph="frontdesk") == 1
    await conn.expect("response.create")  # greeting
    await conn.send(ev.function_call_turn("get_weather", {"city": "Rome"}))
    await conn.expect("conversation.item.create")
    await conn.send(ev.function_call_turn("transfer_to_billing_support", {}))
    await conn.expect("session.update", lambda e: "billing" in e["session"]["instructions"])
    await fake_openai.caller_hangs_up(call_id)
    await ended_record(callserver, call_id)
    # A bad webhook and a duplicate, for the counters.
    async with httpx.AsyncClient() as client:
        await client.post(callserver.webhook_url, content=b"{}")
    samples = await scrape(callserver)
    assert value(samples, "callserver_calls_active", graph="frontdesk") == 0
    ended = {
        dict(labels)["end_reason"]: v
        for (name, labels), v in samples.items()
        if name == "callserver_calls_ended_total"
    }
    assert ended == {"caller_hangup": 1}
    assert value(samples, "callserver_accept_latency_seconds_count") == 1
    assert (
        value(samples, "callserver_tool_duration_seconds_count", tool="get_weather", outcome="ok")
        == 1
    )
    assert value(samples, "callserver_handoffs_total", graph="frontdesk") == 1
    assert value(samples, "callserver_webhook_rejected_total", reason="missing_headers") == 1
    assert value(samples, "callserver_hangup_cleanup_seconds_count") == 1
    text = json.dumps([list(k) for k in samples])
    assert "+1425" not in text and call_id not in text  # no numbers or call ids in labels


async def test_post_call_event_delivered_and_signed(
    start_callserver, fake_openai: FakeOpenAI, httpserver: HTTPServer, tmp_path
) -> None:
    httpserver.expect_request("/hooks/call-ended", method="POST").respond_with_data("ok")
    server = await start_callserver(
        postcall_urls=(httpserver.url_for("/hooks/call-ended"),),
        postcall_secret=POSTCALL_SECRET,
        outbox_path=tmp_path / "outbox.sqlite3",
        redact_numbers=True,
    )
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.expect("response.create")  # greeting
    await conn.send(ev.function_call_turn("get_weather", {"city": "Lima"}))
    await conn.expect("conversation.item.create")
    await conn.send(ev.assistant_turn("It is sunny in Lima."))
    await fake_openai.caller_hangs_up(call_id)
    await ended_record(server, call_id)
    await wait_for(lambda: len(httpserver.log) >= 1, timeout=10, what="post-call delivery")
    request, _ = httpserver.log[0]
    body = request.get_data()
    Webhook(POSTCALL_SECRET).verify(body, dict(request.headers))
    event = json.loads(body)
    assert event["type"] == "call.ended"
    data = event["data"]
    assert data["call_id"] == call_id
    assert data["end_reason"] == "caller_hangup"
    assert data["graph"] == "frontdesk"
    assert [t["name"] for t in data["tool_calls"]] == ["get_weather"]
    assert "+14255551212" not in body.decode()  # redacted
    assert data["usage"]["total_tokens"] > 0
    assert [(turn["role"], turn["text"]) for turn in data["transcript"]] == [
        ("agent", "It is sunny in Lima.")
    ]
    assert data["transcript"][0]["agent"] == "Customer Service"


async def test_healthz_and_readyz(callserver: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{callserver.url}/healthz")
        ready = await client.get(f"{callserver.url}/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
