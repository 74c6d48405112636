"""The ``live:`` block of a graph: settings that exist only on OpenAI's GPT-Live API.

GPT-Live splits a call between a voice model (``model``: hears and speaks, full duplex, no
tools of its own) and a Responses *backend* it delegates work to (``backend_model``: runs
the graph's tools and handoffs). Everything here maps onto the Live accept's ``session``;
``turn_gap`` is callserver's own (Live sends transcript fragments without turn boundaries).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from callserver.graph.fields import Duration, Strict

LIVE_MODELS: tuple[str, ...] = ("gpt-live-1", "gpt-live-1.1")


class LiveSettings(Strict):
    """GPT-Live settings of a graph with ``engine: live``."""

    model: str = Field("gpt-live-1", min_length=1, description="the Live voice model")
    backend_model: str | None = Field(
        None,
        min_length=1,
        description="Responses model the voice model delegates to; runs the agents' tools "
        "and handoffs. Required when any agent has tools or handoffs (or a key hands off).",
    )
    instructions: str | None = Field(
        None,
        description="voice-model (frontend) prompt: tone, interruptions, when to delegate. "
        "Default: the starting agent's instructions. Placeholders allowed. Immutable per call.",
    )
    store: bool = Field(
        False, description="keep the call at OpenAI: its stereo recording is downloaded"
    )
    safety_identifier: str | None = Field(
        None, description="stable end-user id for abuse detection, e.g. '{{ caller }}'"
    )
    acknowledgement_delay_ms: int | None = Field(
        None, ge=0, le=60_000, description="delay before the automatic spoken acknowledgement"
    )
    tool_choice: Literal["auto", "none", "required"] | None = Field(
        None, description="the backend model's tool choice"
    )
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=16, description="per delegated response")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    web_search: bool = Field(False, description="give the backend OpenAI's hosted web search")
    turn_gap: Duration = Field(
        0.8,
        gt=0,
        le=10,
        description="callserver: this long without agent speech ends an agent turn "
        "(guardrail runs, 'hang up after the goodbye', transcript turns)",
    )
