"""Tool stubbing for replay: a copy of the loaded config whose chosen tools answer from the
cassette instead of running.

Stubbing is a property of the replay's own config object, built from a fresh load: the
production path never sees it, and shared ``FunctionTool`` objects are copied, not patched.
The built-in call tools (``end_call``, ``transfer_call``) always run for real, because what
they do to the call (hang up, REFER) is exactly what a replay checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext

from callserver.graph.context import CallToolContext
from callserver.graph.spec import Config

__all__ = ["ToolAnswer", "is_builtin", "stub_tools", "tool_names"]

ToolAnswer = Callable[[str, str, str], Awaitable[str]]
"""(replay call id, tool name, arguments JSON) -> the recorded output (may never return)."""

_BUILTIN_MODULE = "callserver.graph.builtin_tools"


def is_builtin(tool: FunctionTool) -> bool:
    """``end_call`` / ``transfer_call`` style tools that act on the call itself."""
    return getattr(tool.on_invoke_tool, "__module__", "") == _BUILTIN_MODULE


def tool_names(config: Config) -> set[str]:
    """Every stubbable (non built-in) tool name in the config."""
    return {
        tool.name
        for graph in config.graphs.values()
        for plan in graph.agents.values()
        for tool in plan.tools
        if not is_builtin(tool)
    }


def stub_tools(config: Config, execute: Collection[str] | None, answer: ToolAnswer) -> Config:
    """``config`` with every non built-in tool stubbed except those in ``execute``.

    ``execute=None`` means run every tool for real (nothing is stubbed).
    """
    if execute is None:
        return config
    replaced: dict[int, FunctionTool] = {}

    def swap(tool: FunctionTool) -> FunctionTool:
        if is_builtin(tool) or tool.name in execute:
            return tool
        if id(tool) not in replaced:
            replaced[id(tool)] = dataclasses.replace(tool, on_invoke_tool=_stub(tool.name, answer))
        return replaced[id(tool)]

    graphs = {}
    for name, graph in config.graphs.items():
        agents = {
            key: dataclasses.replace(plan, tools=tuple(swap(t) for t in plan.tools))
            for key, plan in graph.agents.items()
        }
        graphs[name] = dataclasses.replace(graph, agents=agents)
    return dataclasses.replace(config, graphs=graphs)


def _stub(name: str, answer: ToolAnswer) -> Callable[[ToolContext[Any], str], Awaitable[str]]:
    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        context = ctx.context
        call_id = context.call.call_id if isinstance(context, CallToolContext) else ""
        return await answer(call_id, name, arguments)

    invoke.__qualname__ = f"replay_stub[{name}]"
    return invoke
