"""Turning pydantic validation errors into operator-facing issues with lines and paths."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from callserver.graph import graph_models, route_models, session_models, tool_models
from callserver.graph.errors import ConfigIssue, did_you_mean
from callserver.graph.fields import Strict
from callserver.graph.outbound_models import VARIABLE_PATTERN
from callserver.graph.yamlsrc import LineDict, format_path, locate

_TYPE_CHOICES = {
    "tools": "python, http, end_call or transfer_call",
    "guardrails": "python or blocked_phrases",
    "turn_detection": "semantic_vad or server_vad",
}


def _all_models() -> list[type[BaseModel]]:
    _ = (graph_models, route_models, session_models, tool_models)  # make sure all are defined
    found: list[type[BaseModel]] = []
    stack: list[type[BaseModel]] = [Strict]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _allowed_keys(node: Any) -> list[str]:
    """The fields of the model that best fits a mapping, for an unknown key's did-you-mean."""
    if not isinstance(node, LineDict):
        return []
    keys = {str(k) for k in node}
    best: tuple[int, list[str]] = (0, [])
    for model in _all_models():
        fields = list(model.model_fields)
        type_field = model.model_fields.get("type")
        if type_field is not None and "type" in node:
            allowed = getattr(type_field.annotation, "__args__", ())
            if node["type"] not in allowed:
                continue
        score = len(keys & set(fields))
        if score > best[0]:
            best = (score, fields)
    return best[1]


def _every_key() -> list[str]:
    """Every config key, for a mapping with no known key to tell its model by."""
    return sorted({name for model in _all_models() for name in model.model_fields})


def _node_at(data: Any, path: list[str | int]) -> Any:
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _message(err: Any, data: Any, path: list[str | int]) -> str:
    kind = err["type"]
    loc = err["loc"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(_node_at(data, path[:-1])) or _every_key()
        return f"unknown key {key!r}" + did_you_mean(key, allowed)
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "union_tag_not_found":
        choices = next((_TYPE_CHOICES[p] for p in reversed(path) if p in _TYPE_CHOICES), "")
        return "missing key 'type'" + (f" ({choices})" if choices else "")
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", ""))
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        return (
            f"unknown type {tag!r}{did_you_mean(tag, expected)} (expected: {', '.join(expected)})"
        )
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "[key]":
        if ctx.get("pattern") == VARIABLE_PATTERN:
            return (
                f"invalid variable name {path[-1]!r}: a letter or '_', then letters, digits "
                "and '_' (at most 64)"
            )
        return f"invalid name {path[-1]!r}: use letters, digits, '_' and '-' (at most 64)"
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]


def _shown_path(data: Any, path: list[str | int]) -> list[str | int]:
    """``path`` with mapping keys YAML read as numbers (``1:`` in a DTMF map) made text, so
    they print as ``dtmf.keys.1`` rather than like a list index."""
    shown: list[str | int] = []
    node = data
    for part in path:
        if isinstance(node, LineDict):
            written = next((k for k in node if k == part and not isinstance(k, bool)), part)
            shown.append(str(getattr(written, "source", written)))
        else:
            shown.append(part)
        node = _node_at(node, [part])
    return shown


def pydantic_issues(file: str, data: Any, exc: ValidationError) -> list[ConfigIssue]:
    """One issue per pydantic error, located in the YAML source."""
    issues: dict[tuple[int, str, str], ConfigIssue] = {}
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p != "[key]"]
        line, path = locate(data, loc)
        message = _message(err, data, path)
        issue = ConfigIssue(file, line, format_path(_shown_path(data, path)), message)
        issues.setdefault((issue.line, issue.path, issue.message), issue)
    return list(issues.values())
