"""A validated config, and how a graph turns into fresh SDK agents for one call.

Everything that can fail is resolved at load time (imports, env vars, references), so
``GraphSpec.build`` only fills placeholders and wires objects: it cannot fail on a call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool
from agents.guardrail import OutputGuardrail
from agents.realtime import (
    RealtimeAgent,
    RealtimeRunConfig,
    RealtimeSessionModelSettings,
    realtime_handoff,
)

from callserver.graph.analysis_models import PostCallPlan
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.dtmf_models import DtmfPlan
from callserver.graph.live_models import LiveSettings
from callserver.graph.outbound_models import OutboundSettings, VariableSpec
from callserver.graph.placeholders import renderer
from callserver.graph.routes import RouteResult, RouteTable
from callserver.graph.session_models import AUDIO_FORMATS, SessionSettings


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-graph call limits, enforced by the calls layer."""

    max_duration_s: float = 55 * 60
    idle_timeout_s: float | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """One agent as loaded: everything but the per-call placeholder values."""

    key: str
    name: str
    instructions: str
    handoff_description: str | None
    voice: str | dict[str, str] | None
    tools: tuple[FunctionTool, ...]
    handoffs: tuple[tuple[str, str | None], ...]
    guardrails: tuple[OutputGuardrail[Any], ...]


def handoff_tool_name(agent_name: str) -> str:
    """The SDK's ``transfer_to_<agent>`` name, computed without its rename warning."""
    return "transfer_to_" + re.sub(r"[^a-z0-9_]", "_", agent_name.lower())


@dataclass(frozen=True, slots=True)
class BuiltLive:
    """A Live graph's per-call values: settings plus the placeholders rendered for this call."""

    settings: LiveSettings
    instructions: str
    """The voice model's (frontend) prompt."""
    safety_identifier: str | None


@dataclass(slots=True)
class BuiltGraph:
    """The SDK objects for one call. Nothing here is shared with another call."""

    starting_agent: RealtimeAgent[CallToolContext]
    agents: dict[str, RealtimeAgent[CallToolContext]]
    model: str
    model_settings: RealtimeSessionModelSettings
    run_config: RealtimeRunConfig
    greeting: str | None
    limits: Limits
    dtmf: DtmfPlan = field(default_factory=DtmfPlan)
    engine: str = "realtime"
    voice: str | dict[str, str] = "marin"
    live: BuiltLive | None = None
    """Set for ``engine: live`` graphs."""
    leave_message: str | None = None
    """The voicemail message for this call (``outbound.leave_message``), rendered."""
    version: object | None = None
    """The graph version (its ``GraphSpec``) this call was built from: engines keep what is
    the same for every call of a version (``engines/realtime/accept_bodies.py``)."""


@dataclass(frozen=True, slots=True, repr=False)
class GraphSpec:
    """A validated graph, ready to be built for any number of calls."""

    name: str
    file: str
    description: str | None
    start: str
    agents: Mapping[str, AgentPlan]
    session: SessionSettings
    limits: Limits
    greeting: str | None
    timezone: str
    guardrail_debounce_chars: int
    dtmf: DtmfPlan = field(default_factory=DtmfPlan)
    engine: str = "realtime"
    live: LiveSettings | None = None
    """For ``engine: live``: always set (defaults filled in) once the graph is valid."""
    post_call: PostCallPlan = field(default_factory=PostCallPlan)
    """Transcript redaction and the analysis, read after the call (records/analysis*)."""
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)
    """Values an outbound call brings (``{{ var.NAME }}``), by name."""
    outbound: OutboundSettings | None = None
    """How calls placed with this graph are dialed; None: the defaults."""

    def __repr__(self) -> str:
        return f"GraphSpec(name={self.name!r}, file={self.file!r}, agents={list(self.agents)!r})"

    @property
    def voice(self) -> str | dict[str, str]:
        """The call's voice: the starting agent's, else the session's (fixed for the call)."""
        voice: Any = self.agents[self.start].voice or self.session.voice
        return voice if isinstance(voice, str | dict) else voice.model_dump()

    def model_settings(self) -> RealtimeSessionModelSettings:
        """Session settings for the SDK: only what is configured, never ``model_name``
        (the SDK refuses it together with a SIP ``call_id``; the model goes in the accept).
        A Live graph has no Realtime session settings: only its voice is shared."""
        if self.engine != "realtime":
            return {"voice": self.voice}  # type: ignore[typeddict-item]
        s = self.session
        settings: dict[str, Any] = {
            "voice": self.voice,
            "turn_detection": s.turn_detection.model_dump(exclude_none=True),
            "input_audio_transcription": (
                s.transcription.model_dump(exclude_none=True) if s.transcription else None
            ),
        }
        if s.speed is not None:
            settings["speed"] = s.speed
        if s.noise_reduction is not None:
            settings["input_audio_noise_reduction"] = {"type": s.noise_reduction}
        if s.tool_choice is not None:
            settings["tool_choice"] = s.tool_choice
        if s.max_output_tokens is not None:
            settings["max_output_tokens"] = s.max_output_tokens
        if s.input_audio_format is not None:
            settings["input_audio_format"] = dict(AUDIO_FORMATS[s.input_audio_format])
        if s.output_audio_format is not None:
            settings["output_audio_format"] = dict(AUDIO_FORMATS[s.output_audio_format])
        settings["tracing"] = s.tracing.model_dump(exclude_none=True) if s.tracing else None
        return settings  # type: ignore[return-value]

    def build(self, info: CallInfo) -> BuiltGraph:
        """Fresh agents for one call, with placeholders filled from ``info``."""
        render = renderer(
            info,
            graph=self.name,
            timezone=self.timezone,
            defaults={name: v.default for name, v in self.variables.items()},
        )
        agents: dict[str, RealtimeAgent[CallToolContext]] = {
            key: RealtimeAgent[CallToolContext](
                name=plan.name,
                instructions=render(plan.instructions),
                handoff_description=plan.handoff_description,
                tools=list(plan.tools),
                output_guardrails=list(plan.guardrails),
            )
            for key, plan in self.agents.items()
        }
        for key, plan in self.agents.items():
            agents[key].handoffs = [
                realtime_handoff(
                    agents[target],
                    tool_name_override=handoff_tool_name(agents[target].name),
                    tool_description_override=description,
                )
                for target, description in plan.handoffs
            ]
        model_settings = self.model_settings()
        run_config: RealtimeRunConfig = {
            "model_settings": model_settings,
            "guardrails_settings": {"debounce_text_length": self.guardrail_debounce_chars},
            "tracing_disabled": self.session.tracing is None or self.engine != "realtime",
        }
        live = None
        if self.live is not None:
            frontend = self.live.instructions
            live = BuiltLive(
                settings=self.live,
                instructions=render(frontend) if frontend else str(agents[self.start].instructions),
                safety_identifier=(
                    render(self.live.safety_identifier) if self.live.safety_identifier else None
                ),
            )
        return BuiltGraph(
            starting_agent=agents[self.start],
            agents=agents,
            model=self.live.model if self.live is not None else self.session.model,
            model_settings=model_settings,
            run_config=run_config,
            greeting=render(self.greeting) if self.greeting else None,
            limits=self.limits,
            dtmf=self.dtmf,
            engine=self.engine,
            voice=self.voice,
            live=live,
            leave_message=(
                render(self.outbound.leave_message)
                if self.outbound is not None and self.outbound.leave_message
                else None
            ),
            version=self,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated config: its graphs and the routing table."""

    graphs: Mapping[str, GraphSpec]
    routes: RouteTable
    config_hash: str
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    sources: tuple[tuple[str, bytes], ...] = ()
    """Every file read (relative path, bytes): what the hash covers. Another instance can
    rebuild this exact config from them, for a call that moves to it mid-call."""
    root_file: str | None = None
    """The graph file loaded when the config was one file; None for a directory."""

    def route(self, info: CallInfo) -> RouteResult:
        """The graph (or SIP rejection) for an incoming call. Never raises."""
        return self.routes.route(info, dict(self.graphs))
