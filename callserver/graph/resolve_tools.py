"""Load-time resolution of a graph's tools and guardrails into SDK objects."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from agents import FunctionTool, function_tool
from agents.guardrail import OutputGuardrail
from agents.strict_schema import ensure_strict_json_schema
from pydantic import SecretStr

from callserver.graph.builtin_tools import end_call_tool, transfer_call_tool
from callserver.graph.guardrails import blocked_phrases_guardrail, python_guardrail
from callserver.graph.http_tool import HttpToolRuntime, url_problems
from callserver.graph.refs import RefError, expand_env, import_ref, literal_part
from callserver.graph.tool_models import (
    BlockedPhrases,
    EndCallTool,
    GuardrailSpec,
    HttpTool,
    PythonTool,
    ToolSpec,
)

Report = Callable[[list[str | int], str], None]
"""Records an issue at a path inside the graph file."""

_SENSITIVE_WORDS = ("auth", "token", "secret", "key", "password", "signature", "cookie")
_AUTH_SCHEMES = ("", "bearer", "basic", "token", "apikey")


def _sensitive(header: str) -> bool:
    return any(word in header.lower() for word in _SENSITIVE_WORDS)


def resolve_tool(
    key: str, spec: ToolSpec, env: Mapping[str, str], report: Report, warn: Callable[[str], None]
) -> FunctionTool | None:
    """The SDK tool for one ``tools:`` entry, or None after reporting why not."""
    at: list[str | int] = ["tools", key]
    if key.startswith("transfer_to_"):
        report(at, "tool names starting with 'transfer_to_' are reserved for handoffs")
        return None
    if isinstance(spec, PythonTool):
        return _python_tool(key, spec, report)
    if isinstance(spec, HttpTool):
        return _http_tool(key, spec, env, report, warn)
    if isinstance(spec, EndCallTool):
        return end_call_tool(key, spec.description)
    return transfer_call_tool(key, spec.target, spec.description)


def _python_tool(key: str, spec: PythonTool, report: Report) -> FunctionTool | None:
    at: list[str | int] = ["tools", key, "function"]
    try:
        obj = import_ref(spec.function)
    except RefError as exc:
        report(at, str(exc))
        return None
    if isinstance(obj, FunctionTool):
        tool = copy.copy(obj)
        tool.name = key
        if spec.description:
            tool.description = spec.description
        return tool
    if not callable(obj):
        report(at, f"{spec.function!r} is not a function (found {type(obj).__name__})")
        return None
    try:
        return function_tool(obj, name_override=key, description_override=spec.description)
    except Exception as exc:
        report(at, f"cannot make a tool of {spec.function!r}: {exc}")
        return None


def _http_tool(
    key: str, spec: HttpTool, env: Mapping[str, str], report: Report, warn: Callable[[str], None]
) -> FunctionTool | None:
    at: list[str | int] = ["tools", key]
    ok = True
    headers: dict[str, SecretStr] = {}
    for name, raw in spec.headers.items():
        expanded = expand_env(raw, env)
        for missing in expanded.missing:
            report([*at, "headers", name], f"environment variable {missing} is not set")
            ok = False
        for var in expanded.defaulted:
            warn(f"{key}: header {name} uses the default of ${{{var}}} (not set)")
        if _sensitive(name) and (
            not expanded.refs or literal_part(raw).strip().lower() not in _AUTH_SCHEMES
        ):
            report(
                [*at, "headers", name],
                f"header {name} looks secret: take its value from an environment variable, "
                "e.g. 'Bearer ${API_TOKEN}'",
            )
            ok = False
        headers[name] = SecretStr(expanded.value)
    if "$" in literal_part(spec.url) or "${" in spec.url:
        report([*at, "url"], "the url cannot use environment variables")
        ok = False
    parameters = _parameters(spec.parameters, [*at, "parameters"], report)
    if parameters is None:
        return None
    for problem in url_problems(spec.url, parameters["properties"], parameters["required"]):
        report([*at, "url"], problem)
        ok = False
    secret: SecretStr | None = None
    if spec.signing is not None:
        raw_secret = spec.signing.secret
        expanded = expand_env(raw_secret, env)
        if not expanded.refs or literal_part(raw_secret):
            report([*at, "signing", "secret"], "the secret must be an env reference: ${NAME}")
            ok = False
        for missing in expanded.missing:
            report([*at, "signing", "secret"], f"environment variable {missing} is not set")
            ok = False
        for var in expanded.defaulted:
            warn(f"{key}: signing uses the default of ${{{var}}} (not set): demo only")
        secret = SecretStr(expanded.value)
    if not ok:
        return None
    runtime = HttpToolRuntime(
        name=key,
        description=spec.description,
        method=spec.method,
        url=spec.url,
        parameters=parameters,
        timeout=spec.timeout,
        result=spec.result,
        max_output_chars=spec.max_output_chars,
        headers=headers,
        signing_secret=secret,
        signature_header=spec.signing.header if spec.signing else "X-Callserver-Signature",
        timestamp_header=spec.signing.timestamp_header
        if spec.signing
        else "X-Callserver-Timestamp",
    )
    return runtime.function_tool()


def _parameters(
    schema: dict[str, Any], at: list[str | int], report: Report
) -> dict[str, Any] | None:
    """A strict JSON Schema for the arguments: an object, every property required."""
    if schema.get("type") != "object" or not isinstance(schema.get("properties", {}), dict):
        report(at, "must be a JSON Schema with type: object and properties")
        return None
    from jsonschema import Draft202012Validator, SchemaError  # 2 MiB: only for HTTP tools

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        report(at, f"invalid JSON Schema: {exc.message}")
        return None
    properties = dict(schema.get("properties") or {})
    required = schema.get("required")
    if required is not None and sorted(required) != sorted(properties):
        report(
            [*at, "required"],
            "strict tools need every property required; make optional ones nullable "
            "(type: [string, 'null']) and drop 'required'",
        )
        return None
    full = {**schema, "properties": properties, "required": list(properties)}
    full["additionalProperties"] = False
    try:
        return ensure_strict_json_schema(full)
    except Exception as exc:
        report(at, f"not usable as a strict schema: {exc}")
        return None


def resolve_guardrail(key: str, spec: GuardrailSpec, report: Report) -> OutputGuardrail[Any] | None:
    """The SDK guardrail for one ``guardrails:`` entry, or None after reporting why not."""
    if isinstance(spec, BlockedPhrases):
        return blocked_phrases_guardrail(key, spec.phrases, spec.patterns)
    at: list[str | int] = ["guardrails", key, "function"]
    try:
        return python_guardrail(key, import_ref(spec.function))
    except (RefError, TypeError) as exc:
        report(at, str(exc) if isinstance(exc, RefError) else f"{spec.function!r} {exc}")
        return None
