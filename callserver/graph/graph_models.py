"""Config models of a graph file: its agents, their tools, handoffs and guardrails.

One YAML file = one graph. Agents are keyed by an id used for references inside the file
(``handoffs: [billing]``); ``name`` is what the model and the call records see.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from callserver.graph.analysis_models import AnalysisSpec, RedactEntry
from callserver.graph.dtmf_models import DtmfSpec
from callserver.graph.fields import NAME_PATTERN, Strict, Voice
from callserver.graph.live_models import LiveSettings
from callserver.graph.outbound_models import VARIABLE_PATTERN, OutboundSettings, Variable
from callserver.graph.session_models import LimitsSpec, SessionSettings
from callserver.graph.tool_models import GuardrailSpec, ToolSpec


def _edge_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return {"agent": value}
    return value


class HandoffEdge(Strict):
    """A handoff to another agent of the graph, optionally telling the model when to use it."""

    agent: str
    description: str | None = Field(None, description="overrides the target's handoff_description")


class AgentSpec(Strict):
    """One agent: a prompt with the tools, handoffs and guardrails it may use."""

    name: str | None = Field(None, description="shown to the model; defaults to the agent's key")
    instructions: str | None = None
    instructions_file: str | None = Field(None, description="path relative to this YAML file")
    handoff_description: str | None = Field(
        None, description="tells other agents when to hand off to this one"
    )
    voice: Voice | None = Field(
        None, description="only on the starting agent: the voice cannot change mid-call"
    )
    tools: list[str] = Field(default_factory=list)
    handoffs: list[
        Annotated[
            HandoffEdge,
            BeforeValidator(_edge_shorthand, json_schema_input_type=str | HandoffEdge),
        ]
    ] = Field(default_factory=list)
    output_guardrails: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_prompt(self) -> AgentSpec:
        if (self.instructions is None) == (self.instructions_file is None):
            raise ValueError("give exactly one of instructions, instructions_file")
        return self


class GraphFile(Strict):
    """A graph: the agents answering a call, where the call starts, and how the session runs."""

    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="what routes refer to; defaults to the file name"
    )
    description: str | None = None
    engine: Literal["realtime", "live"] = Field(
        "realtime",
        description="the OpenAI API that runs this graph's calls: realtime (Realtime API, "
        "webhook realtime.call.incoming) or live (GPT-Live, webhook live.transport.incoming)",
    )
    start: str = Field(description="key of the agent that answers the call")
    greeting: str | None = Field(
        None, description="what the starting agent says first; unset = wait for the caller"
    )
    timezone: str = Field("UTC", description="IANA zone used for {{ now }}")
    session: SessionSettings = Field(default_factory=SessionSettings)
    live: LiveSettings | None = Field(None, description="GPT-Live settings (engine: live)")
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    guardrail_debounce_chars: int = Field(
        100, ge=1, description="run output guardrails every N characters of speech"
    )
    tools: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ToolSpec] = Field(default_factory=dict)
    guardrails: dict[Annotated[str, Field(pattern=NAME_PATTERN)], GuardrailSpec] = Field(
        default_factory=dict
    )
    agents: dict[Annotated[str, Field(pattern=NAME_PATTERN)], AgentSpec] = Field(min_length=1)
    dtmf: DtmfSpec | None = Field(None, description="keypad presses; unset = ignored")
    analysis: AnalysisSpec | None = Field(
        None, description="after each answered call: summary, fields, success; unset = none"
    )
    redact: list[RedactEntry] = Field(
        default_factory=list,
        description="hidden in transcripts sent out (events, analysis): card, phone, email, "
        "or {pattern, label}",
    )
    variables: dict[Annotated[str, Field(pattern=VARIABLE_PATTERN)], Variable] = Field(
        default_factory=dict,
        description="values each placed (outbound) call brings, read as {{ var.NAME }}",
    )
    outbound: OutboundSettings | None = Field(
        None, description="placing calls with this graph: dialer, caller number, voicemail"
    )
