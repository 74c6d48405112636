"""GPT-Live calls as regression tests: the recorded Live cassettes replay against the bundled
config, and a change to the Live graph shows as a divergence in an operator's words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callserver.testing.replay import Replayer
from tests.conftest import ROOT

REPLAYS = ROOT / "tests" / "replays"
LIVE_CASSETTES = sorted(REPLAYS.glob("live_*.cassette.jsonl"))


def _changed_config(tmp_path: Path, old: str, new: str) -> Path:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    graph = config / "frontdesk_live.yaml"
    text = graph.read_text()
    assert old in text
    graph.write_text(text.replace(old, new, 1))
    return config


async def test_every_live_cassette_passes_on_the_bundled_config() -> None:
    assert len(LIVE_CASSETTES) == 5
    async with Replayer(ROOT / "config") as replayer:
        results = await replayer.replay_all(LIVE_CASSETTES)
    assert [r.status for r in results] == ["passed"] * 5, [r.report() for r in results]


@pytest.mark.parametrize(
    ("cassette", "old", "new", "expected"),
    [
        (
            "live_tool_call",
            "tools: [get_weather, book_appointment, end_call]",
            "tools: [book_appointment, end_call]",
            "agent Customer Service lost tool get_weather",
        ),
        (
            "live_handoff_and_back",
            "You specialize in billing and payment issues.",
            "You specialize in refunds.",
            "(the session of agent Billing Support)",
        ),
        (
            "live_guardrail_trip",
            "support\n    output_guardrails: [no_passwords]",
            "support",
            "guardrail no_passwords did not cut the response off",
        ),
    ],
)
async def test_a_changed_live_graph_diverges(
    tmp_path: Path, cassette: str, old: str, new: str, expected: str
) -> None:
    config = _changed_config(tmp_path, old, new)
    async with Replayer(config) as replayer:
        result = await replayer.replay(REPLAYS / f"{cassette}.cassette.jsonl")
    assert result.status == "failed"
    assert expected in str(result.first_divergence), result.report()


async def test_a_live_cassette_on_a_realtime_only_config_says_why(tmp_path: Path) -> None:
    async with Replayer(ROOT / "config" / "agents.yaml") as replayer:
        result = await replayer.replay(REPLAYS / "live_tool_call.cassette.jsonl")
    assert result.status == "failed"
    assert "routed to a graph on the other engine" in str(result.first_divergence)
