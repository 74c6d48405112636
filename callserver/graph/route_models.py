"""Config models of ``routes.yaml``: which graph answers which call."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from callserver.graph.fields import Pattern, Phone, Strict, one_or_many

PhoneList = Annotated[
    list[Phone], BeforeValidator(one_or_many, json_schema_input_type=Phone | list[Phone])
]
PatternList = Annotated[
    list[Pattern], BeforeValidator(one_or_many, json_schema_input_type=str | list[str])
]
SipCode = Annotated[int, Field(ge=400, le=699, description="SIP status code, 4xx-6xx")]


class HeaderMatch(Strict):
    """A SIP header (name case-insensitive) whose value equals a text or matches a regex."""

    name: str
    equals: str | None = None
    pattern: Pattern | None = Field(None, description="must match the whole value")

    @model_validator(mode="after")
    def _one_test(self) -> HeaderMatch:
        if (self.equals is None) == (self.pattern is None):
            raise ValueError("give exactly one of equals, pattern")
        return self


class RouteMatch(Strict):
    """All given conditions must hold; within one condition, any listed value may match.

    Numbers compare after removing spaces, dashes, dots and brackets; patterns are Python
    regexes that must match the whole value.
    """

    dialed: PhoneList = Field(default_factory=list)
    dialed_prefix: PhoneList = Field(default_factory=list)
    dialed_pattern: PatternList = Field(default_factory=list)
    caller: PhoneList = Field(default_factory=list)
    caller_prefix: PhoneList = Field(default_factory=list)
    caller_pattern: PatternList = Field(default_factory=list)
    headers: list[HeaderMatch] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> RouteMatch:
        if not any(getattr(self, f) for f in type(self).model_fields):
            raise ValueError("empty match: it would match every call (use 'default' instead)")
        return self


class RouteSpec(Strict):
    """One route: a match, and either the graph that answers or a SIP code to reject with."""

    name: str | None = None
    match: RouteMatch
    graph: str | None = None
    reject: SipCode | None = None
    sip_headers: dict[str, str] = Field(
        default_factory=dict,
        description="X- headers Twilio adds to the SIP INVITE for calls on this route "
        "(e.g. X-Tenant); they come back in the OpenAI webhook",
    )

    @model_validator(mode="after")
    def _one_action(self) -> RouteSpec:
        for name, value in self.sip_headers.items():
            if not name.startswith("X-") or not name[2:].replace("-", "").isalnum():
                raise ValueError(f"sip_headers: {name!r} must look like X-Name")
            if len(value) > 200 or any(ord(ch) < 32 for ch in value):
                raise ValueError(f"sip_headers: value of {name} must be short printable text")
        if (self.graph is None) == (self.reject is None):
            raise ValueError("give exactly one of graph, reject")
        return self


class DefaultReject(Strict):
    """Reject calls no route matched."""

    reject: SipCode


class RoutesFile(Strict):
    """The routing table: first matching route wins, then ``default``, else reject 603."""

    routes: list[RouteSpec] = Field(default_factory=list)
    default: str | DefaultReject | None = Field(
        None, description="graph name, or {reject: <SIP code>}"
    )
