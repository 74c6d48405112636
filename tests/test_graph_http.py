"""HTTP tools against a local server: signature, arguments, result field, failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from agents import FunctionTool
from agents.tool_context import ToolContext
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from callserver.graph import load_config
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.http_tool import sign

SECRET = "s3cret-signing-key"
INFO = CallInfo(call_id="rtc_42", caller="+1", dialed="+2")


class NoControls:
    async def request_end(self, reason: str, *, after_response: bool = True) -> None: ...

    async def request_transfer(self, target_uri: str, *, reason: str = "transfer") -> None: ...


def make_tool(
    tmp_path: Path, server: HTTPServer, extra: str = "", method: str = "POST"
) -> FunctionTool:
    url = server.url_for("/orders/{order_id}/status")
    (tmp_path / "g.yaml").write_text(
        f"""\
start: a
tools:
  order_status:
    type: http
    description: Look up an order.
    method: {method}
    url: {url}
    headers:
      Authorization: Bearer ${{ORDERS_TOKEN}}
    parameters:
      type: object
      properties:
        order_id: {{type: string}}
        verbose: {{type: boolean}}
    signing:
      secret: ${{ORDERS_SECRET}}
{extra}
agents:
  a: {{instructions: x, tools: [order_status]}}
"""
    )
    env = {"ORDERS_TOKEN": "tok-123", "ORDERS_SECRET": SECRET}
    tool = load_config(tmp_path / "g.yaml", env=env).graphs["g"].build(INFO).starting_agent.tools[0]
    assert isinstance(tool, FunctionTool)
    return tool


def ctx() -> ToolContext[Any]:
    context = CallToolContext(call=INFO, graph="g", controls=NoControls())
    return ToolContext(
        context=context, tool_name="order_status", tool_call_id="1", tool_arguments=""
    )


def verify(request: Request) -> bool:
    """What a backend does: recompute the HMAC over timestamp.body, compare, check age."""
    timestamp = request.headers["X-Callserver-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), f"{timestamp}.".encode() + request.get_data(), hashlib.sha256
    ).hexdigest()
    fresh = abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest(
        request.headers["X-Callserver-Signature"], f"v1={expected}"
    )


async def test_signed_post_and_result_field(tmp_path: Path, httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        body = {"status": {"summary": "shipped on Monday", "code": 3}}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request(re.compile(r"^/orders/.*"), method="POST").respond_with_handler(
        handler
    )
    tool = make_tool(tmp_path, httpserver, extra="    result: status.summary")
    out = await tool.on_invoke_tool(ctx(), json.dumps({"order_id": "A/12 3", "verbose": True}))
    assert out == "shipped on Monday"
    (request,) = seen
    assert request.environ["REQUEST_URI"] == "/orders/A%2F12%203/status"
    assert verify(request)
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["X-Callserver-Call-Id"] == "rtc_42"
    assert json.loads(request.get_data()) == {"verbose": True}


async def test_get_puts_other_arguments_in_the_query(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        "/orders/7/status", method="GET", query_string="verbose=false"
    ).respond_with_json({"ok": 1})
    tool = make_tool(tmp_path, httpserver, method="GET")
    out = await tool.on_invoke_tool(ctx(), '{"order_id": "7", "verbose": false}')
    assert json.loads(out) == {"ok": 1}
    (request, _response) = httpserver.log[0]
    assert verify(request) and request.get_data() == b""


async def test_timeout_becomes_a_tool_output(tmp_path: Path, httpserver: HTTPServer) -> None:
    def slow(_request: Request) -> Response:
        time.sleep(0.5)
        return Response("late")

    httpserver.expect_request("/orders/1/status").respond_with_handler(slow)
    tool = make_tool(tmp_path, httpserver, extra="    timeout: 0.1")
    out = await tool.on_invoke_tool(ctx(), '{"order_id": "1", "verbose": false}')
    assert out == (
        "Error: the order_status service did not answer within 0.1 seconds. "
        "Tell the caller it is not available right now."
    )


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_non_2xx_becomes_a_tool_output(
    tmp_path: Path, httpserver: HTTPServer, status: int
) -> None:
    httpserver.expect_request("/orders/1/status").respond_with_data("secret stack", status=status)
    tool = make_tool(tmp_path, httpserver)
    out = await tool.on_invoke_tool(ctx(), '{"order_id": "1", "verbose": false}')
    assert out == (
        f"Error: the order_status service answered HTTP {status}. "
        "Tell the caller it could not be done right now."
    )


async def test_unreachable_missing_field_and_bad_arguments(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/orders/1/status").respond_with_json({"other": 1})
    tool = make_tool(tmp_path, httpserver, extra="    result: status.summary")
    out = await tool.on_invoke_tool(ctx(), '{"order_id": "1", "verbose": false}')
    assert out == "Error: the order_status answer has no field 'status.summary'."
    out = await tool.on_invoke_tool(ctx(), '{"order_id": 5, "verbose": false}')
    assert out.startswith("Error: invalid arguments for order_status: 5 is not of type 'string'")
    out = await tool.on_invoke_tool(ctx(), "not json")
    assert out == "Error: the arguments for order_status were not valid JSON."
    httpserver.stop()  # the fixture is session-scoped: start it again for later tests
    try:
        out = await tool.on_invoke_tool(ctx(), '{"order_id": "1", "verbose": false}')
    finally:
        httpserver.start()
    assert out == "Error: the order_status service could not be reached. Tell the caller."


def test_strict_schema_and_secrets_hidden(tmp_path: Path, httpserver: HTTPServer) -> None:
    tool = make_tool(tmp_path, httpserver)
    assert tool.strict_json_schema
    assert tool.params_json_schema["required"] == ["order_id", "verbose"]
    assert tool.params_json_schema["additionalProperties"] is False
    assert "tok-123" not in repr(tool) and SECRET not in repr(tool)


def test_sign_matches_documented_scheme() -> None:
    digest = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", 1700000000, b"{}") == f"v1={digest}"


async def test_tool_calls_share_one_tls_context(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a TLS context reads the CA bundle (~27 ms with the event loop blocked): an
    HTTP tool must not pay it on every call, only the process once (callserver/tls.py)."""
    import ssl

    built: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    httpserver.expect_request("/orders/7/status", method="GET").respond_with_json({"ok": 1})
    tool = make_tool(tmp_path, httpserver, method="GET")
    for _ in range(3):
        out = await tool.on_invoke_tool(ctx(), '{"order_id": "7", "verbose": false}')
        assert json.loads(out) == {"ok": 1}
    assert len(httpserver.log) == 3
    assert len(built) <= 1  # the shared context, if no earlier test built it already
