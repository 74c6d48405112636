"""The built-in tools that act on the phone call itself: ``end_call`` and ``transfer_call``.

They reach the call only through ``ctx.context.controls`` (a ``CallControls``), so the graph
layer never imports the calls layer. Both return a string for the model: a tool must never
raise into the session.
"""

from __future__ import annotations

import logging
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext

from callserver.graph.context import CallToolContext

log = logging.getLogger(__name__)

END_CALL_DESCRIPTION = (
    "End the phone call. Use it when the caller says goodbye or the conversation is finished. "
    "The line is hung up once your current response has finished, so say a short goodbye in "
    "the same response."
)
END_CALL_OUTPUT = (
    "The call will be hung up after this response. Say a brief, friendly goodbye now and do "
    "not ask any further questions."
)


def _no_args_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


def _controls(ctx: ToolContext[Any]) -> Any:
    context = ctx.context
    return context.controls if isinstance(context, CallToolContext) else None


def end_call_tool(name: str = "end_call", description: str | None = None) -> FunctionTool:
    """A tool that asks the call to end after the goodbye the model is about to say."""

    async def invoke(ctx: ToolContext[Any], _args: str) -> str:
        controls = _controls(ctx)
        if controls is None:
            return "Error: this session is not attached to a phone call; it cannot be ended."
        try:
            await controls.request_end("agent_end_call", after_response=True)
        except Exception:
            log.exception("end_call: request_end failed")
            return "Error: the call could not be ended. Continue helping the caller."
        return END_CALL_OUTPUT

    return FunctionTool(
        name=name,
        description=description or END_CALL_DESCRIPTION,
        params_json_schema=_no_args_schema(),
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )


def transfer_call_tool(name: str, target: str, description: str | None = None) -> FunctionTool:
    """A tool that cold-transfers the caller to ``target`` (SIP REFER), then ends our side."""
    default_description = (
        f"Transfer the caller to {target}. Tell the caller you are transferring them before "
        "calling this tool."
    )

    async def invoke(ctx: ToolContext[Any], _args: str) -> str:
        controls = _controls(ctx)
        if controls is None:
            return "Error: this session is not attached to a phone call; it cannot be transferred."
        try:
            await controls.request_transfer(target, reason=name)
        except Exception:
            log.exception("transfer_call %s: request_transfer failed", name)
            return (
                "Error: the transfer failed. Apologise to the caller and offer to help another way."
            )
        return "The caller is being transferred now. Say nothing more."

    return FunctionTool(
        name=name,
        description=description or default_description,
        params_json_schema=_no_args_schema(),
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )
