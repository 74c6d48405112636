"""A local fake of the OpenAI Responses API (``POST /v1/responses``) for post-call analysis.

Every request is validated strictly against the installed ``openai`` package's request
type and Structured Outputs' strict-mode rules (``responses_schemas``): an unknown key or a
schema the API would refuse gets the API's 400. Valid requests get a ``Response`` body whose
output text is scripted, or, unscripted, a valid example built from the request's own
schema. It can also fail (any status, with ``Retry-After``), refuse, stop incomplete, and be
slow. It records every request.

``FakeOpenAI`` mounts one on its own port (``fake.responses``), since callserver derives
every URL from ``OPENAI_BASE_URL``; it also runs alone::

    async with FakeResponses() as fake:
        fake.answer({"summary": "...", "success": {"achieved": True, "reason": "..."}})
        ...  # POST f"{fake.base_url}/responses"
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from callserver.testing.fake_calls import RecordedRequest, ScriptedRule, error_body, take_rule
from callserver.testing.fake_rest import authorized, no_key_error, server_error
from callserver.testing.fake_server import InLoopServer
from callserver.testing.local_service import LocalService
from callserver.testing.responses_schemas import request_errors

__all__ = ["FakeResponses", "example_for"]

Output = dict[str, Any] | str | Callable[[dict[str, Any]], dict[str, Any] | str]
"""A scripted answer: the structured output (dict), raw text, or a function of the request."""


@dataclasses.dataclass
class _Step:
    kind: Literal["answer", "fail", "refusal", "incomplete"]
    remaining: int
    output: Output | None = None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    text: str = ""


def example_for(schema: Any) -> Any:
    """A value valid against a (strict-mode) JSON Schema: first enum value, ``true``, 1..."""
    if not isinstance(schema, dict):
        return None
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"] or schema["anyOf"]
        return example_for(branches[0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: example_for(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_for(schema.get("items", {}))]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _schema_of(body: dict[str, Any]) -> Any:
    fmt = (body.get("text") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def _response(body: dict[str, Any], content: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A ``Response`` object as the API returns it (``openai.types.responses.Response``)."""
    text_in = json.dumps(body.get("input"), ensure_ascii=False)
    text_out = "".join(str(c.get("text", c.get("refusal", ""))) for c in content)
    usage_in, usage_out = max(len(text_in) // 4, 1), max(len(text_out) // 4, 1)
    return {
        "id": f"resp_{secrets.token_hex(12)}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model"),
        "output": [
            {
                "type": "message",
                "id": f"msg_{secrets.token_hex(12)}",
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        ],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "store": body.get("store", True),
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": {
            "input_tokens": usage_in,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage_in + usage_out,
        },
        **extra,
    }


class FakeResponses(LocalService):
    """Fake ``POST /v1/responses``; see the module docstring. Script it with :meth:`answer`,
    :meth:`fail`, :meth:`refuse`, :meth:`incomplete` (consumed in order) and :meth:`delay`;
    read ``requests`` (every one, in order) and ``schema_errors`` (bodies that failed)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        self.schema_errors: list[list[str]] = []
        self._script: list[_Step] = []
        self._delays: list[ScriptedRule] = []
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._server = InLoopServer(Starlette(routes=self.routes()), host, port)

    # -- serving --------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The endpoint, for mounting in another fake's app (``FakeOpenAI`` does)."""
        return [Route("/v1/responses", self.endpoint, methods=["POST"])]

    @property
    def base_url(self) -> str:
        """When run alone: e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://{self._server.host}:{self._server.port}/v1"

    async def stop(self) -> None:
        """Let held requests go (so the server stops at once), then stop if running alone."""
        self.release_delays()
        await super().stop()

    # -- scripting ------------------------------------------------------------------------------

    def answer(self, output: Output, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``output`` as the output text (a dict is
        sent as JSON; a str as is, e.g. invalid JSON; a callable gets the request body)."""
        self._script.append(_Step("answer", times, output=output))

    def fail(
        self,
        status: int = 500,
        *,
        times: int = 1,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (default body: server_error)."""
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        self._script.append(_Step("fail", times, status=status, body=body, headers=headers))

    def refuse(self, text: str = "I'm sorry, I cannot help with that.", *, times: int = 1) -> None:
        """A completed response whose content is a refusal."""
        self._script.append(_Step("refusal", times, text=text))

    def incomplete(self, reason: str = "max_output_tokens", *, times: int = 1) -> None:
        """A response with ``status: incomplete`` (the answer was cut off)."""
        self._script.append(_Step("incomplete", times, text=reason))

    def delay(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests for ``seconds`` before answering them
        (:meth:`release_delays` or :meth:`stop` lets them go early)."""
        self._delays.append(ScriptedRule("responses", None, times, seconds=seconds))

    def release_delays(self) -> None:
        """Let every request held by :meth:`delay` go now (later delays still hold)."""
        released, self._release = self._release, asyncio.Event()
        released.set()

    async def wait_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` requests arrived (answered or not); returns them all."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while len(self.requests) < count:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(self.requests)} Responses requests within {timeout}s, expected {count}"
            ) from None
        return list(self.requests)

    # -- the endpoint ---------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        record = RecordedRequest(
            "POST", request.url.path, None, "responses", dict(request.headers), body
        )
        self.requests.append(record)
        await self._notify()
        status, payload, headers = await self._handle(record, body)
        record.status = status
        await self._notify()
        return JSONResponse(payload, status_code=status, headers=headers)

    async def _handle(
        self, record: RecordedRequest, body: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not authorized(record.headers):
            return 401, no_key_error(), {}
        if not isinstance(body, dict):
            return 400, error_body("We could not parse the JSON body of your request."), {}
        errors = request_errors(body)
        if errors:
            record.errors = errors
            self.schema_errors.append(errors)
            return 400, error_body("Invalid request: " + "; ".join(errors)[:2000]), {}
        # The script is consumed in arrival order, even by requests held by a delay.
        step = next((s for s in self._script if s.remaining > 0), None)
        if step is not None:
            step.remaining -= 1
        if (rule := take_rule(self._delays, "responses", None)) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rule.seconds):
                    await self._release.wait()
        return self._answer(step, body)

    def _answer(
        self, step: _Step | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if step is not None and step.kind == "fail":
            return step.status, step.body if step.body is not None else server_error(), step.headers
        if step is not None and step.kind == "refusal":
            return 200, _response(body, [{"type": "refusal", "refusal": step.text}]), {}
        if step is not None and step.kind == "incomplete":
            partial = [{"type": "output_text", "text": "{", "annotations": [], "logprobs": []}]
            details = {"reason": step.text}
            return (
                200,
                _response(body, partial, status="incomplete", incomplete_details=details),
                {},
            )
        output: Any = example_for(_schema_of(body)) if step is None else step.output
        if callable(output):
            output = output(body)
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return 200, _response(body, content), {}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
