"""Strict validation of Responses API requests against the installed ``openai`` package.

The package's ``ResponseCreateParams`` (generated from OpenAI's spec) is the authority for
what ``POST /v1/responses`` accepts. Pydantic turns the TypedDict into a JSON Schema, every
object that lists properties is closed (an unknown key such as ``response_format``, the Chat
Completions name, is refused), and ``jsonschema`` reports errors by path, as ``schemas.py``
does for Realtime. On top of that, :func:`strict_schema_errors` checks the rules the API
applies to a ``json_schema`` format with ``strict: true``, which no type can express.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jsonschema import Draft202012Validator
from openai.types.responses import Response
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

from callserver.testing.schemas import describe_error, forbid_extra_keys, walk

__all__ = ["request_errors", "response_errors", "strict_schema_errors"]

_FORMAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_STRICT_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


@functools.cache
def _validator() -> Draft202012Validator:
    schema = TypeAdapter(ResponseCreateParamsNonStreaming).json_schema()
    return Draft202012Validator(walk(schema, forbid_extra_keys))


def _context(path: tuple[str | int, ...]) -> str:
    return "In context=" + repr(path) + ", "


def _strict_node(node: Any, path: tuple[str | int, ...], out: list[str]) -> None:
    if not isinstance(node, dict):
        return
    types = node.get("type")
    for kind in types if isinstance(types, list) else [types] if types else []:
        if kind not in _STRICT_TYPES:
            out.append(f"{_context(path)}type {kind!r} is not supported")
    if types == "object" or (isinstance(types, list) and "object" in types):
        props = node.get("properties")
        if not isinstance(props, dict):
            out.append(f"{_context(path)}an object must list its 'properties'")
            props = {}
        if node.get("additionalProperties") is not False:
            out.append(
                f"{_context(path)}'additionalProperties' is required to be supplied and to be false"
            )
        missing = [k for k in props if k not in (node.get("required") or [])]
        if missing:
            out.append(
                f"{_context(path)}'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing {missing[0]!r}."
            )
        for key, child in props.items():
            _strict_node(child, (*path, "properties", key), out)
    if "items" in node:
        _strict_node(node["items"], (*path, "items"), out)
    for key in ("anyOf", "$defs"):
        children = node.get(key)
        if isinstance(children, list):
            for i, child in enumerate(children):
                _strict_node(child, (*path, key, i), out)
        elif isinstance(children, dict):
            for name, child in children.items():
                _strict_node(child, (*path, key, name), out)


def strict_schema_errors(fmt: Any) -> list[str]:
    """What the API says about a ``text.format`` of type ``json_schema`` and ``strict: true``
    that breaks Structured Outputs' rules ([] when it does not, or is not strict)."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return []
    name = fmt.get("name", "")
    out: list[str] = []
    if not isinstance(name, str) or not _FORMAT_NAME.match(name):
        out.append(f"text.format.name {name!r} must match ^[a-zA-Z0-9_-]{{1,64}}$")
    if fmt.get("strict") is not True:
        return out
    schema = fmt.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
        out.append("the root of a strict schema must be an object, not anyOf")
        return out
    _strict_node(schema, (), out)
    return [f"Invalid schema for response_format {name!r}: {line}" for line in out]


def request_errors(body: Any) -> list[str]:
    """Errors in a ``POST /v1/responses`` body (non-streaming), strict keys; [] when valid."""
    errors = [describe_error(err) for err in _validator().iter_errors(body)]
    if not errors and isinstance(body, dict):
        text = body.get("text")
        if isinstance(text, dict):
            errors.extend(strict_schema_errors(text.get("format")))
    return errors


def response_errors(body: Any) -> list[str]:
    """Whether a response body parses as the SDK's ``Response`` (what the fake answers)."""
    try:
        Response.model_validate(body)
    except ValidationError as exc:
        return [f"{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []
