"""GPT-Live graphs in YAML: what loads, what is refused at file:line, what `check` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.cli import main as cli_main
from callserver.graph import ConfigError, load_config
from callserver.graph.context import CallInfo
from tests.conftest import ROOT

LIVE = """\
engine: live
start: front
live:
  backend_model: gpt-5-mini
tools:
  lookup: tests.graph_fixtures.tools:add
agents:
  front:
    instructions: Hello {{ caller }}.
    tools: [lookup]
"""

CASES: list[tuple[str, str, str]] = [
    (
        "realtime-only session key",
        LIVE + "session:\n  turn_detection: {type: server_vad}\n",
        "g.yaml:12 session.turn_detection: turn_detection does not exist on GPT-Live "
        "(engine: live): GPT-Live is full duplex with built-in turn-taking",
    ),
    (
        "transcription",
        LIVE + "session:\n  transcription: {model: gpt-4o-mini-transcribe}\n",
        "g.yaml:12 session.transcription: transcription does not exist on GPT-Live "
        "(engine: live): GPT-Live always transcribes both sides; there is nothing to configure",
    ),
    (
        "speed",
        LIVE + "session:\n  speed: 1.2\n",
        "g.yaml:12 session.speed: speed does not exist on GPT-Live (engine: live): "
        "GPT-Live has no speaking-speed setting",
    ),
    (
        "tool_choice on the voice model",
        LIVE + "session:\n  tool_choice: required\n",
        "g.yaml:12 session.tool_choice: tool_choice does not exist on GPT-Live (engine: live): "
        "the Live voice model has no tools; set live.tool_choice for the backend",
    ),
    (
        "session model",
        LIVE + "session:\n  model: gpt-realtime\n",
        "g.yaml:12 session.model: model does not exist on GPT-Live (engine: live): "
        "set live.model instead (gpt-live-1, gpt-live-1.1)",
    ),
    (
        "audio format",
        LIVE + "session:\n  input_audio_format: pcmu\n",
        "g.yaml:12 session.input_audio_format: input_audio_format does not exist on GPT-Live "
        "(engine: live): SIP negotiates the codec; GPT-Live refuses audio formats on SIP",
    ),
    (
        "tools without a backend model",
        LIVE.replace("live:\n  backend_model: gpt-5-mini\n", ""),
        "g.yaml:1 engine: live.backend_model is required: agents have tools or handoffs, and "
        "GPT-Live runs them on a Responses model it delegates to (e.g. backend_model: "
        "gpt-5-mini)",
    ),
    (
        "live block without backend model",
        LIVE.replace("  backend_model: gpt-5-mini\n", "  store: true\n"),
        "g.yaml:3 live: live.backend_model is required: agents have tools or handoffs, and "
        "GPT-Live runs them on a Responses model it delegates to (e.g. backend_model: "
        "gpt-5-mini)",
    ),
    (
        "live block on a realtime graph",
        LIVE.replace("engine: live\n", ""),
        "g.yaml:2 live: a live: block needs 'engine: live' (this graph runs on realtime)",
    ),
    (
        "Live-only voice on realtime",
        "start: front\nsession:\n  voice: vesper\nagents:\n  front:\n    instructions: Hi\n",
        "g.yaml:3 session.voice: voice 'vesper' exists only on GPT-Live "
        "(realtime: alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar)",
    ),
    (
        "unknown live key",
        LIVE.replace("gpt-5-mini\n", "gpt-5-mini\n  turn_gap_ms: 200\n"),
        "g.yaml:5 live.turn_gap_ms: unknown key 'turn_gap_ms' (did you mean 'turn_gap'?)",
    ),
    (
        "bad backend option",
        LIVE.replace("gpt-5-mini\n", "gpt-5-mini\n  reasoning_effort: huge\n"),
        "g.yaml:5 live.reasoning_effort: input should be 'none', 'minimal', 'low', 'medium', "
        "'high' or 'xhigh'",
    ),
    (
        "bad placeholder in live instructions",
        LIVE.replace("gpt-5-mini\n", "gpt-5-mini\n  instructions: Hi {{ callr }}\n"),
        "g.yaml:5 live.instructions: unknown placeholder {{ callr }} (did you mean 'caller'?)",
    ),
    (
        "engine typo",
        LIVE.replace("engine: live", "engine: liv"),
        "g.yaml:1 engine: input should be 'realtime' or 'live'",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_live_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "g.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "g.yaml", env={})
    messages = [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]
    assert any(m.startswith(expected) for m in messages), messages


def test_live_graph_loads_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(LIVE + "session:\n  voice: vesper\n")
    graph = load_config(tmp_path / "g.yaml", env={}).graphs["g"]
    assert graph.engine == "live"
    assert graph.live is not None and graph.live.model == "gpt-live-1"
    built = graph.build(CallInfo(call_id="live_x", caller="+15550100", dialed="+18005550100"))
    assert built.engine == "live" and built.model == "gpt-live-1" and built.voice == "vesper"
    assert built.live is not None and built.live.instructions == "Hello +15550100."


def test_a_graph_without_tools_needs_no_backend(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "engine: live\nstart: front\nagents:\n  front:\n    instructions: Hi\n"
    )
    graph = load_config(tmp_path / "g.yaml", env={}).graphs["g"]
    assert graph.live is not None and graph.live.backend_model is None


def test_check_prints_each_engine_and_its_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check", str(ROOT / "config")]) == 0
    out = capsys.readouterr().out
    assert (
        "graph frontdesk_live (" in out
        and "engine live (webhook live.transport.incoming)" in out
        and "model gpt-live-1 (backend gpt-5-mini)" in out
    )
    assert "graph frontdesk (" in out and "engine realtime (webhook realtime.call.incoming)" in out
    assert "subscribe the OpenAI webhook to: live.transport.incoming, realtime.call.incoming" in out


def test_schema_covers_the_live_block() -> None:
    from callserver.graph.commands import json_schema

    text = str(json_schema())
    assert "backend_model" in text and "'live'" in text


def test_voice_lists_match_the_installed_openai_package() -> None:
    """The graph loader keeps its own voice lists (importing ``openai.types.live`` costs
    3.5 MiB in every process); the package's Live types stay the authority."""
    from typing import get_args

    from openai.types.live.built_in_voice import BuiltInVoice

    from callserver.graph.fields import LIVE_ONLY_VOICES, VOICES

    assert set(get_args(BuiltInVoice)) == set(VOICES) | set(LIVE_ONLY_VOICES)
