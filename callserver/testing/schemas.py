"""Validate realtime messages against the published OpenAI GA schemas.

The schema file (``realtime_ga_schemas.json``, extracted from openai/openai-openapi, see its
``$comment``) ships inside the package so that users' tests can check what their agent graphs
send without network access. Two modes matter:

- strict (for what *we* send): every object that lists ``properties`` forbids other keys, so a
  typo such as ``"instruction"`` is caught instead of silently ignored by the live API.
- null tolerant (for what the *server* sends): the live service sends ``null`` for fields the
  spec types as non-null, so a fake that mimics it must be allowed to do the same.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = [
    "client_event_errors",
    "errors",
    "event_schema_name",
    "server_event_errors",
]

SCHEMA_FILE = "realtime_ga_schemas.json"
Direction = Literal["client", "server"]


def walk(node: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Rebuild a JSON tree bottom-up, applying ``fn`` to every object."""
    if isinstance(node, list):
        return [walk(x, fn) for x in node]
    if not isinstance(node, dict):
        return node
    return fn({k: walk(v, fn) for k, v in node.items()})


def forbid_extra_keys(node: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def _allow_nulls(node: dict[str, Any]) -> dict[str, Any]:
    props = node.get("properties")
    if isinstance(props, dict):
        # `type` stays non-null: it is the discriminator, a null there is a real bug.
        node["properties"] = {
            k: v if k == "type" else {"anyOf": [v, {"type": "null"}]} for k, v in props.items()
        }
    return node


@functools.cache
def _raw_defs() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)["$defs"]


@functools.cache
def _defs(strict: bool, null_tolerant: bool) -> dict[str, Any]:
    defs = copy.deepcopy(_raw_defs())
    if strict:
        defs = walk(defs, forbid_extra_keys)
    if null_tolerant:
        defs = walk(defs, _allow_nulls)
    return defs


@functools.cache
def _validator(name: str, strict: bool, null_tolerant: bool) -> Draft202012Validator:
    defs = _defs(strict, null_tolerant)
    if name not in defs:
        raise KeyError(f"no schema named {name!r}")
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


@functools.cache
def _type_map(direction: Direction) -> dict[str, str]:
    union = "RealtimeClientEvent" if direction == "client" else "RealtimeServerEvent"
    defs = _raw_defs()
    out: dict[str, str] = {}
    for ref in defs[union]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        for event_type in defs[name]["properties"]["type"].get("enum", []):
            out[event_type] = name
    return out


def event_schema_name(event_type: str, direction: Direction) -> str | None:
    """The schema name for a client or server event type, None if the GA union lacks it."""
    return _type_map(direction).get(event_type)


def errors(
    schema_name: str, msg: Any, strict: bool = True, *, null_tolerant: bool = False
) -> list[str]:
    """Validate ``msg`` against one named schema; ``[]`` means valid.

    Each entry is ``"<json/path>: <message>"`` so a failing test names the offending field.
    """
    return [
        describe_error(err)
        for err in _validator(schema_name, strict, null_tolerant).iter_errors(msg)
    ]


def _is_discriminator_miss(err: ValidationError) -> bool:
    path = list(err.absolute_path)
    return bool(path) and path[-1] == "type" and err.validator in ("enum", "const")


def _closest(err: ValidationError) -> ValidationError:
    """The leaf error of the union branch the message most likely meant.

    Branches whose ``type`` discriminator did not match are skipped; among the rest, the leaf
    that got deepest into the message wins.
    """
    if not err.context:
        return err
    branches: dict[Any, list[ValidationError]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    matching = [b for b in branches.values() if not any(map(_is_discriminator_miss, b))]
    candidates = [_closest(sub) for b in (matching or list(branches.values())) for sub in b]
    return max(candidates, key=lambda e: len(e.absolute_path))


def describe_error(err: ValidationError) -> str:
    """One line per error; for an ``anyOf`` miss, also the likeliest branch's leaf error.

    Without the leaf, a strict failure deep in a union only says "not valid under any of the
    given schemas", which does not tell the reader which key was wrong.
    """
    path = "/".join(map(str, err.absolute_path)) or "<root>"
    line = f"{path}: {err.message[:300]}"
    if err.context:
        leaf = _closest(err)
        leaf_path = "/".join(map(str, leaf.absolute_path)) or "<root>"
        line += f" [closest: {leaf_path}: {leaf.message[:200]}]"
    return line


def _event_errors(msg: Any, direction: Direction) -> list[str]:
    event_type = msg.get("type") if isinstance(msg, dict) else None
    name = event_schema_name(event_type, direction) if isinstance(event_type, str) else None
    if name is None:
        return [f"type: unknown {direction} event type {event_type!r}"]
    if direction == "client":
        return errors(name, msg, strict=True)
    return errors(name, msg, strict=False, null_tolerant=True)


def client_event_errors(msg: Any) -> list[str]:
    """Errors in an event a client sends: strict keys, no nulls (what the live API expects)."""
    return _event_errors(msg, "client")


def server_event_errors(msg: Any) -> list[str]:
    """Errors in an event the server sends: extra keys and nulls allowed, like the live API."""
    return _event_errors(msg, "server")
