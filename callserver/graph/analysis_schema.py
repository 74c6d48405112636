"""The JSON Schema a graph's analysis answers against (Structured Outputs, strict mode).

Strict mode has rules of its own: every object lists all its properties as ``required`` and
sets ``additionalProperties: false``; a value that may be absent is a union with ``null``.
The same schema validates the answer before it is trusted, so what a receiver gets always
has this shape.
"""

from __future__ import annotations

from typing import Any

from callserver.graph.analysis_models import AnalysisFieldSpec, AnalysisSpec, PostCallPlan

FORMAT_NAME = "call_analysis"

SUMMARY_DESCRIPTION = (
    "A short summary of the call in two to four sentences: why the caller called, what was "
    "done, and how the call ended."
)


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def field_schema(spec: AnalysisFieldSpec) -> dict[str, Any]:
    """One field: its type (with ``enum``), made nullable when not ``required``."""
    if spec.type == "array":
        item: dict[str, Any] = {"type": spec.items or "string"}
        if spec.enum is not None:
            item["enum"] = list(spec.enum)
        base: dict[str, Any] = {"type": "array", "items": item}
    else:
        base = {"type": spec.type}
        if spec.enum is not None:
            base["enum"] = list(spec.enum)
    out: dict[str, Any] = base if spec.required else {"anyOf": [base, {"type": "null"}]}
    if spec.description:
        out = {**out, "description": spec.description}
    return out


def output_schema(spec: AnalysisSpec) -> dict[str, Any]:
    """``{summary, fields: {...}, success: {achieved, reason}}``, each part only if asked."""
    properties: dict[str, Any] = {}
    if spec.summary:
        properties["summary"] = {"type": "string", "description": SUMMARY_DESCRIPTION}
    if spec.fields:
        properties["fields"] = _object({name: field_schema(f) for name, f in spec.fields.items()})
    if spec.success:
        properties["success"] = _object(
            {
                "achieved": {
                    "type": "boolean",
                    "description": f"Whether the goal of the call was reached: {spec.success}",
                },
                "reason": {"type": "string", "description": "One sentence: why."},
            }
        )
    return _object(properties)


def post_call_lines(plan: PostCallPlan) -> list[str]:
    """What ``callserver check`` prints about a graph's analysis and redaction."""
    out = []
    if plan.analysis is not None:
        a = plan.analysis
        asked = (["summary"] if a.summary else []) + (["success"] if a.success else [])
        out.append(
            f"  analysis: model {a.model}, {', '.join(asked) or 'no summary'}, fields "
            f"[{', '.join(a.fields) or '-'}], timeout {a.timeout_s:g}s x{a.max_attempts}"
        )
    if plan.redact:
        shown = [r.kind if r.kind != "custom" else f"/{r.pattern}/" for r in plan.redact]
        out.append(f"  redact: [{', '.join(shown)}]")
    return out
