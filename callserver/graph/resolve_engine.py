"""Load-time checks that depend on a graph's engine (``engine: realtime`` or ``live``).

A setting the graph's engine does not have is an error at its file:line, never silently
dropped: an operator who writes ``turn_detection`` on a GPT-Live graph must learn that Live
has no such thing, rather than wonder why it has no effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callserver.graph.fields import LIVE_ONLY_VOICES, VOICES
from callserver.graph.graph_models import GraphFile
from callserver.graph.live_models import LiveSettings

Report = Callable[[list[str | int], str], None]

NOT_ON_LIVE: dict[str, str] = {
    "model": "set live.model instead (gpt-live-1, gpt-live-1.1)",
    "speed": "GPT-Live has no speaking-speed setting",
    "transcription": "GPT-Live always transcribes both sides; there is nothing to configure",
    "turn_detection": "GPT-Live is full duplex with built-in turn-taking",
    "noise_reduction": "GPT-Live has no noise-reduction setting",
    "tool_choice": "the Live voice model has no tools; set live.tool_choice for the backend",
    "max_output_tokens": "set live.max_output_tokens for the backend model instead",
    "input_audio_format": "SIP negotiates the codec; GPT-Live refuses audio formats on SIP",
    "output_audio_format": "SIP negotiates the codec; GPT-Live refuses audio formats on SIP",
    "tracing": "GPT-Live sessions are not traced by the agents SDK",
}
"""``session:`` keys a Live graph may not set, with what to do instead (all but ``voice``)."""


def check_engine(gf: GraphFile, report: Report) -> LiveSettings | None:
    """Report settings the graph's engine lacks; the Live settings to use (None on Realtime)."""
    voices = [(["session", "voice"], gf.session.voice)]
    voices += [(["agents", key, "voice"], a.voice) for key, a in gf.agents.items() if a.voice]
    if gf.engine == "realtime":
        if gf.live is not None:
            report(["live"], "a live: block needs 'engine: live' (this graph runs on realtime)")
        for path, voice in voices:
            if isinstance(voice, str) and voice in LIVE_ONLY_VOICES:
                report(
                    path, f"voice {voice!r} exists only on GPT-Live (realtime: {', '.join(VOICES)})"
                )
        return None
    for key in sorted(gf.session.model_fields_set - {"voice"}):
        report(
            ["session", key], f"{key} does not exist on GPT-Live (engine: live): {NOT_ON_LIVE[key]}"
        )
    live = gf.live or LiveSettings()
    if live.backend_model is None and _delegates(gf):
        report(
            ["live"] if gf.live is not None else ["engine"],
            "live.backend_model is required: agents have tools or handoffs, and GPT-Live runs "
            "them on a Responses model it delegates to (e.g. backend_model: gpt-5-mini)",
        )
    return live


def _delegates(gf: GraphFile) -> bool:
    """Whether calls need Responses delegation: any tool, handoff, or key that hands off."""
    if any(agent.tools or agent.handoffs for agent in gf.agents.values()):
        return True
    keys: Any = gf.dtmf.keys.values() if gf.dtmf else ()
    return any(getattr(action, "handoff", None) for action in keys)
