"""Output guardrails: the built-in blocked-phrases check and wrapping of Python ones.

Realtime guardrails run on the transcript every N characters (the graph's
``guardrail_debounce_chars``); a trip cancels the response being spoken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agents.guardrail import GuardrailFunctionOutput, OutputGuardrail


def blocked_phrases_guardrail(
    name: str, phrases: Sequence[str], patterns: Sequence[str]
) -> OutputGuardrail[Any]:
    """Trip when the output contains a phrase (case-insensitive) or matches a pattern."""
    parts = [re.escape(p) for p in phrases if p] + [f"(?:{p})" for p in patterns]
    regex = re.compile("|".join(parts), re.IGNORECASE)

    def check(_ctx: Any, _agent: Any, output: Any) -> GuardrailFunctionOutput:
        match = regex.search(str(output))
        return GuardrailFunctionOutput(
            output_info={"guardrail": name, "matched": match.group(0) if match else None},
            tripwire_triggered=match is not None,
        )

    return OutputGuardrail(guardrail_function=check, name=name)


def python_guardrail(name: str, obj: Any) -> OutputGuardrail[Any]:
    """An imported object as an OutputGuardrail; raises TypeError for anything unusable."""
    if isinstance(obj, OutputGuardrail):
        return obj
    if callable(obj):
        return OutputGuardrail(guardrail_function=obj, name=name)
    raise TypeError(f"is not a function or an OutputGuardrail (found {type(obj).__name__})")
