"""The ``analysis:`` and ``redact:`` sections of a graph, and their load-time form.

``analysis:`` asks for one Responses API call after each answered call: a summary, the fields
the business needs (name -> a small JSON Schema) and a verdict on the call's goal. ``redact:``
lists what to hide in transcripts before they leave the process (post-call events and the
analysis request). Both are read here; the cross-key checks (enum values against the field's
type, at least something to ask) live in ``resolve_analysis`` where errors can point at the
item's own line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, WithJsonSchema

from callserver.graph.errors import did_you_mean
from callserver.graph.fields import Duration, Pattern, Strict

FIELD_TYPES = ("string", "integer", "number", "boolean", "array")
ITEM_TYPES = ("string", "integer", "number", "boolean")
REDACT_KINDS = ("card", "phone", "email")
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""Field names become JSON keys in receivers' code and columns: identifiers only."""


def _choice(choices: tuple[str, ...], what: str) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            hint = did_you_mean(value, choices) or f" ({what}: {', '.join(choices)})"
            raise ValueError(f"unknown {what[:-1] if what.endswith('s') else what} {value!r}{hint}")
        return value

    return check


FieldType = Annotated[
    str,
    AfterValidator(_choice(FIELD_TYPES, "types")),
    WithJsonSchema({"type": "string", "enum": list(FIELD_TYPES)}),
]
ItemType = Annotated[
    str,
    AfterValidator(_choice(ITEM_TYPES, "types")),
    WithJsonSchema({"type": "string", "enum": list(ITEM_TYPES)}),
]
RedactKind = Annotated[
    str,
    AfterValidator(_choice(REDACT_KINDS, "kinds")),
    WithJsonSchema({"type": "string", "enum": list(REDACT_KINDS)}),
]


EnumValue = Annotated[Any, WithJsonSchema({"type": ["string", "integer", "number"]})]
"""Any YAML scalar here; checked against the field's type by ``resolve_analysis``."""


class AnalysisFieldSpec(Strict):
    """One structured field the analysis fills in, as a small JSON Schema."""

    type: FieldType
    description: str | None = Field(None, description="tells the model what to put here")
    enum: list[EnumValue] | None = Field(
        None,
        min_length=1,
        description="the only values allowed (of the field's type; for an array, its items')",
    )
    items: ItemType | None = Field(None, description="type of an array's items; default string")
    required: bool = Field(
        True, description="false: the model answers null when the call does not tell"
    )


def _field_shorthand(value: Any) -> Any:
    """``reason: string`` is ``reason: {type: string}``."""
    if isinstance(value, str):
        return {"type": value}
    return value


FieldEntry = Annotated[
    AnalysisFieldSpec,
    BeforeValidator(_field_shorthand, json_schema_input_type=FieldType | AnalysisFieldSpec),
]


def _field_name(value: str) -> str:
    if not re.match(FIELD_NAME_PATTERN, value):
        raise ValueError(
            f"invalid field name {value!r}: use letters, digits and '_', not starting with a "
            "digit (at most 64)"
        )
    return value


FieldName = Annotated[
    str,
    AfterValidator(_field_name),
    WithJsonSchema({"type": "string", "pattern": FIELD_NAME_PATTERN}),
]


class AnalysisSpec(Strict):
    """After each answered call: one Responses API request with the transcript, tool calls
    and end reason, answered as structured output (summary, fields, success)."""

    model: str = Field(min_length=1, description="a Responses API model, e.g. gpt-4.1-mini")
    instructions: str | None = Field(
        None, description="what the business wants from the analysis, in words"
    )
    summary: bool = Field(True, description="ask for a short summary of the call")
    fields: dict[FieldName, FieldEntry] = Field(
        default_factory=dict, description="name -> {type, description, enum, required}"
    )
    success: str | None = Field(
        None,
        min_length=1,
        description="the goal of the call in words; judged achieved true/false with a reason",
    )
    timeout: Duration = Field(30.0, gt=0, le=300, description="per request; default 30s")
    max_attempts: int = Field(
        3, ge=1, le=10, description="requests in all (timeouts, 429 and 5xx are retried)"
    )


class CustomRedaction(Strict):
    """A regular expression to hide, e.g. account numbers: ``{pattern: 'ACC-\\d{6}'}``."""

    pattern: Pattern
    label: str = Field("[redacted]", min_length=1, description="what replaces each match")


def _redact_tag(value: Any) -> str:
    """Pick the branch up front, so a typo in a kind gets one message, not one per branch."""
    return "kind" if isinstance(value, str) else "custom"


RedactEntry = Annotated[
    Annotated[RedactKind, Tag("kind")] | Annotated[CustomRedaction, Tag("custom")],
    Discriminator(_redact_tag),
]


# ---- the resolved form, read after calls --------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalysisPlan:
    """A graph's analysis, validated. ``output_schema`` is the strict JSON Schema sent as
    ``text.format`` and used again to validate the answer."""

    model: str
    instructions: str | None
    summary: bool
    fields: tuple[str, ...]
    success: str | None
    timeout_s: float
    max_attempts: int
    output_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RedactionRule:
    """One thing to hide in transcripts: a built-in kind, or ``custom`` with its regex."""

    kind: Literal["card", "phone", "email", "custom"]
    pattern: str = ""
    label: str = ""


@dataclass(frozen=True, slots=True)
class PostCallPlan:
    """What a graph asks of the post-call path: redaction rules and (optionally) analysis."""

    analysis: AnalysisPlan | None = None
    redact: tuple[RedactionRule, ...] = field(default_factory=tuple)
