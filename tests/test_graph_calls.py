"""Agent graphs from YAML, end to end through the fake OpenAI (issue 3)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from callserver.calls.idle import PROMPT
from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from tests.conftest import ROOT
from tests.e2e import assert_idle, ended_record, place_call, wait_for

ROUTING = ROOT / "tests" / "configs" / "routing"


async def accept_body(fake: FakeOpenAI, call_id: str) -> dict:
    await wait_for(lambda: fake.requests_for(call_id, "accept"), what="accept")
    return fake.requests_for(call_id, "accept")[0].json


async def test_route_by_dialed_number_fills_placeholders(start_callserver, fake_openai) -> None:
    server = await start_callserver(ROUTING)
    call_id, _ = await place_call(
        server,
        fake_openai,
        to="+1 800 555 0100",
        from_="+14155550199",
        extra_headers=[("X-Tenant", "acme <script>")],
    )
    body = await accept_body(fake_openai, call_id)
    assert body["audio"]["output"]["voice"] == "coral"
    assert "tenant is acme <script>" in body["instructions"]
    assert "called +18005550100" in body["instructions"] or "+1 800" in body["instructions"]
    assert "from +14155550199" in body["instructions"]
    record = await server.services.manager.registry.get(call_id)
    assert record.graph == "sales" and record.route == "by-number"


async def test_route_by_header(start_callserver, fake_openai) -> None:
    server = await start_callserver(ROUTING)
    call_id, _ = await place_call(
        server, fake_openai, to="+18005559999", extra_headers=[("X-Tier", "premium")]
    )
    body = await accept_body(fake_openai, call_id)
    assert body["instructions"] == "You fix things for premium customers."
    assert body["audio"]["output"]["voice"] == "ash"


async def test_reject_routes(start_callserver, fake_openai) -> None:
    server = await start_callserver(ROUTING)
    blocked, _ = await place_call(server, fake_openai, from_="+19005551234", to="+18005559999")
    unrouted, _ = await place_call(server, fake_openai, to="+18005559999")
    for call_id, code in ((blocked, 403), (unrouted, 480)):
        record = await ended_record(server, call_id)
        assert record.end_reason == "rejected:route"
        assert [r.json for r in fake_openai.requests_for(call_id, "reject")] == [
            {"status_code": code}
        ]
        assert fake_openai.requests_for(call_id, "accept") == []
    await assert_idle(server)


async def test_per_graph_concurrency_limit(start_callserver, fake_openai) -> None:
    server = await start_callserver(ROUTING)
    first, _ = await place_call(server, fake_openai, to="+18005550100")
    await fake_openai.wait_connected(first)
    second, _ = await place_call(server, fake_openai, to="+18005550100")
    record = await ended_record(server, second)
    assert record.end_reason == "rejected:capacity"
    assert [r.json for r in fake_openai.requests_for(second, "reject")] == [{"status_code": 486}]
    # Another graph still has room.
    third, _ = await place_call(
        server, fake_openai, to="+18005559999", extra_headers=[("X-Tier", "premium")]
    )
    await fake_openai.wait_connected(third)


async def test_transfer_call_sends_refer_with_configured_target(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(ROOT / "config")
    call_id, _ = await place_call(server, fake_openai, to="+18005550101")
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    await conn.send(ev.function_call_turn("put_through_to_sales", {}, call_id="fc_t"))
    record = await ended_record(server, call_id)
    assert record.end_reason == "transferred"
    refers = fake_openai.requests_for(call_id, "refer")
    assert [r.json for r in refers] == [{"target_uri": "tel:+14155550123"}]
    assert not fake_openai.hangup_observed(call_id)  # the call now belongs to the target
    await assert_idle(server)


def _http_tool_config(tmp_path: Path, url: str, timeout: float = 2) -> Path:
    (tmp_path / "lookup.yaml").write_text(
        f"""
name: lookup
start: desk
tools:
  order_status:
    type: http
    description: Look up an order.
    method: POST
    url: {url}/orders/{{order_id}}/status
    headers:
      Authorization: Bearer ${{LOOKUP_TOKEN:-tok-test}}
    parameters:
      type: object
      properties:
        order_id: {{type: string}}
    timeout: {timeout}
    result: status.summary
    signing:
      secret: ${{LOOKUP_SIGNING:-sign-test}}
agents:
  desk:
    name: Desk
    instructions: Look up orders.
    tools: [order_status]
"""
    )
    return tmp_path / "lookup.yaml"


async def test_http_tool_signed_request_and_result(
    start_callserver, fake_openai: FakeOpenAI, httpserver: HTTPServer, tmp_path: Path
) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(
            json.dumps({"status": {"summary": "shipped on Monday"}}),
            content_type="application/json",
        )

    httpserver.expect_request("/orders/A 1/status", method="POST").respond_with_handler(handler)
    server = await start_callserver(_http_tool_config(tmp_path, httpserver.url_for("")[:-1]))
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.send(ev.function_call_turn("order_status", {"order_id": "A 1"}, call_id="fc_h"))
    output = await conn.expect(
        "conversation.item.create", lambda e: e["item"].get("call_id") == "fc_h"
    )
    assert output["item"]["output"] == "shipped on Monday"
    request = seen[0]
    ts = request.headers["X-Callserver-Timestamp"]
    expected = (
        "v1="
        + hmac.new(b"sign-test", f"{ts}.".encode() + request.get_data(), hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(expected, request.headers["X-Callserver-Signature"])
    assert abs(time.time() - int(ts)) < 60
    assert request.headers["Authorization"] == "Bearer tok-test"
    assert request.headers["X-Callserver-Call-Id"] == call_id


async def test_http_tool_timeout_becomes_tool_output(
    start_callserver, fake_openai: FakeOpenAI, httpserver: HTTPServer, tmp_path: Path
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/orders/B2/status").respond_with_handler(slow)
    config = _http_tool_config(tmp_path, httpserver.url_for("")[:-1], timeout=0.3)
    server = await start_callserver(config)
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    await conn.send(ev.function_call_turn("order_status", {"order_id": "B2"}, call_id="fc_x"))
    output = await conn.expect(
        "conversation.item.create", lambda e: e["item"].get("call_id") == "fc_x"
    )
    assert (
        "did not answer" in output["item"]["output"]
        or "timed out" in output["item"]["output"].lower()
    )
    assert (await server.services.manager.registry.get(call_id)).state.value == "active"


def _idle_config(tmp_path: Path) -> Path:
    """A one-agent graph whose callers are prompted after 1 s of silence."""
    path = tmp_path / "idle.yaml"
    path.write_text(
        "name: idle\nstart: a\nlimits:\n  idle_timeout: 1s\n"
        "agents:\n  a:\n    name: A\n    instructions: Be brief.\n"
    )
    return path


async def test_idle_caller_is_prompted_once_then_hung_up(
    start_callserver, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    server = await start_callserver(_idle_config(tmp_path))
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    prompt = await conn.expect("response.create", timeout=4)
    assert prompt["response"]["instructions"] == PROMPT
    record = await ended_record(server, call_id, timeout=5)
    assert record.end_reason == "idle_timeout"
    assert fake_openai.hangup_observed(call_id)
    await assert_idle(server)


async def test_speech_resets_the_idle_clock(
    start_callserver, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    server = await start_callserver(_idle_config(tmp_path))
    call_id, _ = await place_call(server, fake_openai)
    conn = await fake_openai.wait_connected(call_id)
    for _ in range(4):
        await asyncio.sleep(0.5)
        await conn.send(ev.speech_started())
    assert not [e for e in conn.received if e.get("type") == "response.create"]


async def test_reload_applies_to_new_calls_only(
    start_callserver, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text(
        "name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: Version one.\n"
    )
    server = await start_callserver(config)
    old_call, _ = await place_call(server, fake_openai)
    old_conn = await fake_openai.wait_connected(old_call)
    await old_conn.expect("session.update")

    config.write_text("name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: [broken\n")
    ok, errors = await server.services.config.reload()
    assert not ok and "agents.yaml" in errors
    config.write_text(
        "name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: Version two.\n"
    )
    ok, _ = await server.services.config.reload()
    assert ok

    new_call, _ = await place_call(server, fake_openai)
    assert (await accept_body(fake_openai, new_call))["instructions"] == "Version two."
    # The call in progress keeps its graph: a handoff-free turn still sees version one.
    await old_conn.send(ev.assistant_turn("Still here."))
    assert fake_openai.requests_for(old_call, "accept")[0].json["instructions"] == "Version one."
    assert fake_openai.call_state(old_call) == "accepted"
    old_record = await server.services.manager.registry.get(old_call)
    assert old_record.state.value == "active"
    assert (
        old_record.config_hash != (await server.services.manager.registry.get(new_call)).config_hash
    )
