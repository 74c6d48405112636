"""The GPT-Live accept body, built from the same graph source as the session.

``{"session": {type, model, instructions, audio.output.voice, delegation, store,
safety_identifier}}``: the voice model's prompt, the call's voice (never ``audio.format`` on
SIP: the codec is negotiated there), and, when the graph has tools or handoffs, Responses
delegation carrying the starting agent's prompt and its tools. Validated strictly against
the ``openai`` package's Live types in the fake.
"""

from __future__ import annotations

from typing import Any

from agents.run_context import RunContextWrapper

from callserver.engines.live.tools import backend_config, function_tools
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph


def greeting_instructions(greeting: str) -> str:
    """How a graph's greeting reaches the voice model: Live has no "speak now" command, so
    the accept's instructions tell it to open the call with the greeting."""
    return f'When the call connects, speak first: greet the caller with "{greeting}"'


async def live_accept_body(built: BuiltGraph, context: CallToolContext | None) -> dict[str, Any]:
    """The ``/live/sessions/{id}/accept`` body for one call of a Live graph."""
    live = built.live
    if live is None:
        raise ValueError("not a Live graph")
    instructions = live.instructions
    if built.greeting:
        instructions = f"{instructions}\n\n{greeting_instructions(built.greeting)}"
    session: dict[str, Any] = {
        "type": "live",
        "model": built.model,
        "instructions": instructions,
        "audio": {"output": {"voice": built.voice}},
    }
    settings = live.settings
    if settings.backend_model is not None:
        agent = built.starting_agent
        tools = await agent.get_all_tools(RunContextWrapper(context))
        delegation: dict[str, Any] = {
            "type": "responses",
            "responses": backend_config(
                settings, str(agent.instructions or ""), function_tools(tools, agent.handoffs)
            ),
        }
        if settings.acknowledgement_delay_ms is not None:
            delegation["acknowledgement_delay_ms"] = settings.acknowledgement_delay_ms
        session["delegation"] = delegation
    elif settings.acknowledgement_delay_ms is not None:
        session["delegation"] = {
            "type": "client",
            "acknowledgement_delay_ms": settings.acknowledgement_delay_ms,
        }
    if settings.store:
        session["store"] = True
    if live.safety_identifier:
        session["safety_identifier"] = live.safety_identifier
    return {"session": session}
