"""Load-time checks of a graph's ``analysis:`` and ``redact:`` sections that pydantic cannot
make alone, reported at the offending item's line: enum values of the wrong type (YAML reads
an unquoted ``yes`` as a boolean), options that do not fit the field's type, an analysis
that asks for nothing, limits of Structured Outputs, regexes that match nothing at all."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from callserver.graph.analysis_models import (
    AnalysisFieldSpec,
    AnalysisPlan,
    AnalysisSpec,
    CustomRedaction,
    PostCallPlan,
    RedactionRule,
)
from callserver.graph.analysis_schema import output_schema

Report = Callable[[list[str | int], str], None]
Warn = Callable[[str], None]

MAX_FIELDS = 100
MAX_ENUM_VALUES = 1000
"""Structured Outputs' limits on one schema (properties, enum values across all fields)."""

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
}


def _enum_problem(value: Any, kind: str) -> str | None:
    """Why ``value`` cannot be an enum value of a ``kind`` field, or None if it can."""
    article = "an" if kind == "integer" else "a"
    if isinstance(value, bool):
        if kind == "string":
            return (
                f"enum value {str(value).lower()} was read by YAML as a boolean "
                "(so are yes/no/on/off): quote it"
            )
        return f"enum value {str(value).lower()} is a boolean, not {article} {kind}"
    if not isinstance(value, _PYTHON_TYPES[kind]):
        hint = ": quote it" if kind == "string" and isinstance(value, int | float) else ""
        return f"enum value {value!r} is not {article} {kind}{hint}"
    return None


def _check_field(name: str, spec: AnalysisFieldSpec, report: Report) -> int:
    """Report a field's problems; returns how many enum values it has."""
    at: list[str | int] = ["analysis", "fields", name]
    if spec.items is not None and spec.type != "array":
        report([*at, "items"], f"items is only for type array (this field is a {spec.type})")
    if spec.enum is None:
        return 0
    kind = (spec.items or "string") if spec.type == "array" else spec.type
    if kind == "boolean":
        report([*at, "enum"], "a boolean field cannot have an enum (it is true or false)")
        return len(spec.enum)
    seen: list[Any] = []
    for i, value in enumerate(spec.enum):
        problem = _enum_problem(value, kind)
        if problem is not None:
            report([*at, "enum", i], problem)
        elif any(value == s and type(value) is type(s) for s in seen):
            report([*at, "enum", i], f"enum value {value!r} is listed twice")
        seen.append(value)
    return len(spec.enum)


def _analysis(spec: AnalysisSpec, report: Report, warn: Warn) -> AnalysisPlan | None:
    if not (spec.summary or spec.fields or spec.success):
        report(["analysis"], "nothing to ask: set summary: true, fields or success")
        return None
    if len(spec.fields) > MAX_FIELDS:
        report(["analysis", "fields"], f"at most {MAX_FIELDS} fields ({len(spec.fields)} given)")
    enum_values = sum(_check_field(name, f, report) for name, f in spec.fields.items())
    if enum_values > MAX_ENUM_VALUES:
        report(
            ["analysis", "fields"],
            f"at most {MAX_ENUM_VALUES} enum values in all fields ({enum_values} given)",
        )
    if "realtime" in spec.model.lower():
        warn(
            f"analysis.model {spec.model!r} looks like a Realtime model; the analysis uses "
            "the Responses API (e.g. gpt-4.1-mini)"
        )
    return AnalysisPlan(
        model=spec.model,
        instructions=spec.instructions,
        summary=spec.summary,
        fields=tuple(spec.fields),
        success=spec.success,
        timeout_s=spec.timeout,
        max_attempts=spec.max_attempts,
        output_schema=output_schema(spec),
    )


def _redaction(entries: Sequence[str | CustomRedaction], report: Report) -> list[RedactionRule]:
    rules: list[RedactionRule] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            rule = RedactionRule(entry)  # type: ignore[arg-type]
        else:
            if re.search(entry.pattern, "") is not None:
                report(["redact", i, "pattern"], "pattern matches the empty string")
                continue
            rule = RedactionRule("custom", entry.pattern, entry.label)
        if rule in rules:
            report(
                ["redact", i], f"{entry if isinstance(entry, str) else 'pattern'} is listed twice"
            )
            continue
        rules.append(rule)
    return rules


def resolve_post_call(
    analysis: AnalysisSpec | None,
    redact: Sequence[str | CustomRedaction],
    report: Report,
    warn: Warn,
) -> PostCallPlan:
    """The graph's post-call plan; problems go to ``report`` (the plan is unusable if any)."""
    plan = _analysis(analysis, report, warn) if analysis is not None else None
    return PostCallPlan(analysis=plan, redact=tuple(_redaction(redact, report)))
