"""A request to place one call, validated: nothing is dialed from a request with an error.

Shared by ``POST /admin/calls``, campaign rows and the CLI, so every way in refuses the same
things with the same words: a ``to`` that is not E.164, an unknown graph, a variable the
graph does not declare, a required one missing, a ``from`` that is not E.164.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from callserver.graph.errors import did_you_mean, no_such
from callserver.graph.outbound_models import is_e164
from callserver.graph.spec import GraphSpec

MAX_VARIABLES = 50
MAX_VALUE_CHARS = 1000
DIALERS = ("live", "twilio")
_SEPARATORS = re.compile(r"[\s\-.()]")


class RequestError(ValueError):
    """A request (or campaign row) field is wrong; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def as_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclasses.dataclass(frozen=True, slots=True)
class CallRequest:
    """One call to place, valid against the graph it names."""

    to: str
    graph: str
    variables: Mapping[str, str]
    from_: str | None = None
    dialer: str | None = None


def phone(value: Any, field: str) -> str:
    """An E.164 number, or RequestError naming ``field``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"+{value}"  # a CSV or YAML reader turned "+1415..." into a number
    if not isinstance(value, str) or not value.strip():
        raise RequestError(field, "required: an E.164 number such as +14155550123")
    text = value.strip()
    if _SEPARATORS.search(text[1:]) and text.startswith("+"):
        text = "+" + _SEPARATORS.sub("", text[1:])  # +1 (415) 555-0123 as people write it
    if not is_e164(text):
        raise RequestError(
            field, f"{_shown(text)!r} is not an E.164 number (+, country code, number)"
        )
    return text


def variables_for(graph: GraphSpec, given: Any, field: str = "variables") -> dict[str, str]:
    """The variables of one call, checked against the graph's declarations."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise RequestError(field, "must be an object of name: value")
    if len(given) > MAX_VARIABLES:
        raise RequestError(field, f"at most {MAX_VARIABLES} variables")
    values: dict[str, str] = {}
    for name, value in given.items():
        key = str(name)
        if key not in graph.variables:
            known = sorted(graph.variables)
            if not known:
                raise RequestError(
                    f"{field}.{_shown(key)}", f"graph {graph.name!r} declares no variables"
                )
            raise RequestError(f"{field}.{_shown(key)}", no_such("variable", key, known))
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RequestError(f"{field}.{key}", "must be a string (or a number)")
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise RequestError(f"{field}.{key}", f"longer than {MAX_VALUE_CHARS} characters")
        if text.strip():
            values[key] = text
    for name, spec in graph.variables.items():
        if spec.needed and name not in values:
            about = f" ({spec.description})" if spec.description else ""
            raise RequestError(
                f"{field}.{name}", f"required by graph {graph.name!r}{about}: missing"
            )
    return values


def graph_named(graphs: Mapping[str, GraphSpec], name: Any, field: str = "graph") -> GraphSpec:
    if not isinstance(name, str) or not name:
        raise RequestError(field, "required: the name of a graph")
    graph = graphs.get(name)
    if graph is None:
        raise RequestError(field, no_such("graph", _shown(name), graphs))
    return graph


def parse_call_request(body: Any, graphs: Mapping[str, GraphSpec]) -> CallRequest:
    """``{"to", "graph", "variables"?, "from"?, "dialer"?}`` -> a CallRequest, or RequestError."""
    if not isinstance(body, Mapping):
        raise RequestError("body", 'must be a JSON object: {"to": "+1...", "graph": "..."}')
    unknown = [k for k in body if k not in ("to", "graph", "variables", "from", "dialer")]
    if unknown:
        key = str(unknown[0])
        hint = did_you_mean(key, ("to", "graph", "variables", "from", "dialer"))
        raise RequestError(_shown(key), f"unknown field{hint}")
    to = phone(body.get("to"), "to")
    graph = graph_named(graphs, body.get("graph"))
    variables = variables_for(graph, body.get("variables"))
    from_ = phone(body["from"], "from") if body.get("from") is not None else None
    dialer = body.get("dialer")
    if dialer is not None and dialer not in DIALERS:
        raise RequestError("dialer", f"must be one of {', '.join(DIALERS)}")
    return CallRequest(to=to, graph=graph.name, variables=variables, from_=from_, dialer=dialer)


def _shown(value: str) -> str:
    """An untrusted value cut short for an error message."""
    return value[:40] + ("..." if len(value) > 40 else "")
