"""The graph's tools and handoffs as GPT-Live delegation tools (``delegation.responses.tools``).

On Live the voice model has no tools: it delegates to a Responses backend whose tools are
plain function tools. Each agent's function tools go there as they are, and each handoff as
its ``transfer_to_<agent>`` function, exactly the names the agents SDK uses on Realtime, so
the SDK session resolves a call to either the same way on both engines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents import FunctionTool
from agents.handoffs import Handoff

from callserver.graph.live_models import LiveSettings


def function_tools(
    tools: Iterable[Any], handoffs: Iterable[Handoff[Any, Any]]
) -> list[dict[str, Any]]:
    """``FunctionToolParam`` dicts for the tools (function tools only) and handoffs."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, FunctionTool) and tool.is_enabled is not False:
            out.append(
                _tool(tool.name, tool.description, tool.params_json_schema, tool.strict_json_schema)
            )
    for handoff in handoffs:
        if handoff.is_enabled is not False:
            out.append(
                _tool(
                    handoff.tool_name,
                    handoff.tool_description,
                    handoff.input_json_schema,
                    handoff.strict_json_schema,
                )
            )
    return out


def _tool(name: str, description: str | None, parameters: Any, strict: bool) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function", "name": name, "parameters": parameters}
    if description:
        tool["description"] = description
    tool["strict"] = bool(strict)
    return tool


def backend_config(
    settings: LiveSettings, instructions: str, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """``ResponsesDelegationConfigParam`` for the accept: model, prompt, tools, options."""
    config: dict[str, Any] = {"model": settings.backend_model, "instructions": instructions}
    all_tools = [*tools, {"type": "web_search"}] if settings.web_search else tools
    if all_tools:
        config["tools"] = all_tools
    if settings.tool_choice is not None:
        config["tool_choice"] = settings.tool_choice
    if settings.parallel_tool_calls is not None:
        config["parallel_tool_calls"] = settings.parallel_tool_calls
    if settings.max_output_tokens is not None:
        config["max_output_tokens"] = settings.max_output_tokens
    if settings.reasoning_effort is not None:
        config["reasoning"] = {"effort": settings.reasoning_effort}
    if settings.verbosity is not None:
        config["text"] = {"verbosity": settings.verbosity}
    if settings.service_tier is not None:
        config["service_tier"] = settings.service_tier
    return config


def backend_update(
    settings: LiveSettings, instructions: str, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """The sparse ``session.update`` delegation for another agent: its prompt and tools
    (model and options keep their accepted values)."""
    all_tools = [*tools, {"type": "web_search"}] if settings.web_search else tools
    return {
        "type": "responses",
        "responses": {"instructions": instructions, "tools": all_tools},
    }
