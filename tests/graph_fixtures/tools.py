"""Tools and guardrails that test configs import by ``module:attribute``."""

from __future__ import annotations

from typing import Any

from agents import function_tool
from agents.guardrail import GuardrailFunctionOutput, OutputGuardrail

NOT_CALLABLE = 42


@function_tool(name_override="ready_made")
def ready_made_tool(order_id: str) -> str:
    """Look up an order.

    Args:
        order_id: The order number.
    """
    return f"order {order_id} shipped"


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _no_secrets(_ctx: Any, _agent: Any, output: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="secret" in str(output))


NO_SECRETS = OutputGuardrail(guardrail_function=_no_secrets, name="no_secrets")
