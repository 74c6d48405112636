"""HTTP tools defined in YAML: a signed request per tool call, whose answer the model reads.

Whatever happens on the wire (timeout, refused connection, HTTP 500, a body that is not
JSON), the model gets a short plain sentence it can act on; the session never sees an
exception. Header values and the signing secret are never logged or echoed.

Signature scheme (for the receiving backend)::

    X-Callserver-Timestamp: <unix seconds>
    X-Callserver-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The body is the exact bytes sent (compact JSON for POST/PUT/PATCH, empty for GET/DELETE).
The backend recomputes the HMAC over the raw bytes, compares in constant time and rejects
timestamps more than 5 minutes old. For GET/DELETE the signature proves origin and freshness,
not the URL: use POST when the arguments matter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from agents import FunctionTool
from agents.tool_context import ToolContext
from pydantic import SecretStr

from callserver.graph.context import CallToolContext
from callserver.tls import client_tls

log = logging.getLogger(__name__)

URL_ARG = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CALL_ID_HEADER = "X-Callserver-Call-Id"
MAX_BODY_BYTES = 1024 * 1024


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def url_problems(url: str, properties: dict[str, Any], required: list[str]) -> list[str]:
    """What is wrong with a URL template, given the tool's argument schema."""
    problems: list[str] = []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(f"url must start with http:// or https:// and a host, got {url!r}")
    elif "{" in parts.netloc or "$" in parts.netloc:
        problems.append("the url's host cannot be templated: the model must not choose hosts")
    for name in URL_ARG.findall(url):
        if name not in properties:
            problems.append(f"url uses {{{name}}} but parameters has no property {name!r}")
        elif name not in required:
            problems.append(f"url uses {{{name}}}, so {name!r} must be required")
    return problems


@dataclass(frozen=True, slots=True)
class HttpToolRuntime:
    """Everything needed to run one HTTP tool, resolved at load time."""

    name: str
    description: str
    method: str
    url: str
    parameters: dict[str, Any]
    timeout: float
    result: str | None
    max_output_chars: int
    headers: dict[str, SecretStr] = field(default_factory=dict)
    signing_secret: SecretStr | None = None
    signature_header: str = "X-Callserver-Signature"
    timestamp_header: str = "X-Callserver-Timestamp"
    _validator: Any = field(init=False, repr=False, compare=False)
    """The arguments' validator, built once per tool rather than on every call of it."""

    def __post_init__(self) -> None:
        from jsonschema import Draft202012Validator  # 2 MiB: only loaded when a graph has one

        object.__setattr__(self, "_validator", Draft202012Validator(self.parameters))

    def function_tool(self) -> FunctionTool:
        """The SDK tool the model calls."""
        return FunctionTool(
            name=self.name,
            description=self.description,
            params_json_schema=self.parameters,
            on_invoke_tool=self.invoke,
            strict_json_schema=True,
        )

    async def invoke(self, ctx: ToolContext[Any], args_json: str) -> str:
        """Run one call of the tool; always returns text for the model."""
        try:
            args = json.loads(args_json or "{}")
        except json.JSONDecodeError:
            return f"Error: the arguments for {self.name} were not valid JSON."
        errors = sorted(self._validator.iter_errors(args), key=str)
        if errors:
            return f"Error: invalid arguments for {self.name}: {errors[0].message}"
        try:
            request = self._request(args, ctx)
        except ValueError as exc:
            return f"Error: {exc}"
        try:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), follow_redirects=False, verify=client_tls()
            ) as client:
                response = await client.send(request, stream=True)
                try:
                    body = await _read_capped(response)
                finally:
                    await response.aclose()
        except httpx.TimeoutException:
            return (
                f"Error: the {self.name} service did not answer within {self.timeout:g} seconds. "
                "Tell the caller it is not available right now."
            )
        except httpx.HTTPError as exc:
            log.warning("http tool %s: %s", self.name, type(exc).__name__)
            return f"Error: the {self.name} service could not be reached. Tell the caller."
        if not response.is_success:
            return (
                f"Error: the {self.name} service answered HTTP {response.status_code}. "
                "Tell the caller it could not be done right now."
            )
        return self._output(response, body)

    def _request(self, args: dict[str, Any], ctx: ToolContext[Any]) -> httpx.Request:
        used = set(URL_ARG.findall(self.url))

        def fill(match: re.Match[str]) -> str:
            value = args.get(match.group(1))
            if value is None:
                raise ValueError(f"{self.name} needs a value for {match.group(1)!r}")
            return quote(str(value), safe="")

        url = URL_ARG.sub(fill, self.url)
        rest = {k: v for k, v in args.items() if k not in used}
        headers = {k: v.get_secret_value() for k, v in self.headers.items()}
        context = getattr(ctx, "context", None)
        if isinstance(context, CallToolContext):
            headers[CALL_ID_HEADER] = context.call.call_id
        body = b""
        params: dict[str, str] = {}
        if self.method in BODY_METHODS:
            body = json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        else:
            params = {k: _query_value(v) for k, v in rest.items() if v is not None}
        if self.signing_secret is not None:
            timestamp = int(time.time())
            secret = self.signing_secret.get_secret_value().encode()
            headers[self.timestamp_header] = str(timestamp)
            headers[self.signature_header] = sign(secret, timestamp, body)
        return httpx.Request(self.method, url, params=params, headers=headers, content=body)

    def _output(self, response: httpx.Response, body: bytes) -> str:
        if self.result is None:
            text = body.decode(response.encoding or "utf-8", errors="replace")
        else:
            try:
                data = json.loads(body)
            except ValueError:
                return f"Error: the {self.name} service did not answer with JSON."
            found, value = _dig(data, self.result)
            if not found:
                return f"Error: the {self.name} answer has no field {self.result!r}."
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) > self.max_output_chars:
            text = text[: self.max_output_chars] + " [truncated]"
        return text


async def _read_capped(response: httpx.Response) -> bytes:
    """The body, but never more than MAX_BODY_BYTES: a backend must not exhaust our memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _dig(data: Any, path: str) -> tuple[bool, Any]:
    """Follow ``a.b.0.c`` through dicts and lists."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node
