"""Choosing the graph for an incoming call: first matching route, then the default."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callserver.graph.context import CallInfo
from callserver.graph.route_models import RouteMatch

if TYPE_CHECKING:
    from callserver.graph.spec import GraphSpec

NO_ROUTE_SIP_CODE = 603
_NUMBER_NOISE = re.compile(r"[\s\-.()]")


def normalize_number(value: str | None) -> str:
    """Compare numbers as ops write them (``+1 800-555 1212``) and as SIP sends them."""
    return _NUMBER_NOISE.sub("", value or "")


@dataclass(frozen=True, slots=True)
class RouteResult:
    """Where a call goes: a graph to answer with, or a SIP code to reject with."""

    graph: GraphSpec | None
    reject_sip_code: int | None
    route_name: str
    sip_headers: Mapping[str, str] = field(default_factory=dict)
    """Per-route X- headers for the Twilio TwiML path (e.g. X-Tenant)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """A compiled ``match:`` block."""

    dialed: frozenset[str]
    dialed_prefix: tuple[str, ...]
    dialed_pattern: tuple[re.Pattern[str], ...]
    caller: frozenset[str]
    caller_prefix: tuple[str, ...]
    caller_pattern: tuple[re.Pattern[str], ...]
    headers: tuple[tuple[str, str | None, re.Pattern[str] | None], ...]

    @classmethod
    def compile(cls, spec: RouteMatch) -> Matcher:
        return cls(
            dialed=frozenset(normalize_number(n) for n in spec.dialed),
            dialed_prefix=tuple(normalize_number(n) for n in spec.dialed_prefix),
            dialed_pattern=tuple(re.compile(p) for p in spec.dialed_pattern),
            caller=frozenset(normalize_number(n) for n in spec.caller),
            caller_prefix=tuple(normalize_number(n) for n in spec.caller_prefix),
            caller_pattern=tuple(re.compile(p) for p in spec.caller_pattern),
            headers=tuple(
                (h.name.lower(), h.equals, re.compile(h.pattern) if h.pattern else None)
                for h in spec.headers
            ),
        )

    def matches(self, info: CallInfo) -> bool:
        """True when every given condition holds for the call."""
        return (
            _number_ok(info.dialed, self.dialed, self.dialed_prefix, self.dialed_pattern)
            and _number_ok(info.caller, self.caller, self.caller_prefix, self.caller_pattern)
            and all(
                _header_ok(info, name, equals, pattern) for name, equals, pattern in self.headers
            )
        )


def _number_ok(
    raw: str | None,
    exact: frozenset[str],
    prefixes: Sequence[str],
    patterns: Sequence[re.Pattern[str]],
) -> bool:
    number = normalize_number(raw)
    if exact and number not in exact:
        return False
    if prefixes and not (number and number.startswith(tuple(prefixes))):
        return False
    return not patterns or any(p.fullmatch(raw or "") for p in patterns)


def _header_ok(
    info: CallInfo, name: str, equals: str | None, pattern: re.Pattern[str] | None
) -> bool:
    values = [v for k, v in info.sip_headers if k.lower() == name]
    if equals is not None:
        return equals in values
    return pattern is not None and any(pattern.fullmatch(v) for v in values)


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route."""

    name: str
    matcher: Matcher
    graph: str | None
    reject: int | None
    sip_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteTable:
    """All routes in order, plus what to do when none matches."""

    routes: tuple[Route, ...]
    default_graph: str | None
    default_reject: int | None

    def route(self, info: CallInfo, graphs: dict[str, GraphSpec]) -> RouteResult:
        for route in self.routes:
            if route.matcher.matches(info):
                if route.reject is not None:
                    return RouteResult(None, route.reject, route.name)
                return RouteResult(
                    graphs[route.graph or ""], None, route.name, dict(route.sip_headers)
                )
        if self.default_graph is not None:
            return RouteResult(graphs[self.default_graph], None, "default")
        if self.default_reject is not None:
            return RouteResult(None, self.default_reject, "default")
        return RouteResult(None, NO_ROUTE_SIP_CODE, "no_match")
