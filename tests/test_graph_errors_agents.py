"""Broken agents, each with its exact message, path and line: handoffs, start, instructions,
voices, placeholders."""

from __future__ import annotations

from pathlib import Path

from tests.graph_errors_support import BASE, Case, assert_graph_error, cases

CASES: list[Case] = [
    (
        "handoff typo",
        """\
start: front
agents:
  front:
    instructions: Hi
    handoffs: [billing, biling]
  billing:
    instructions: Billing.
""",
        "g.yaml:5 agents.front.handoffs[1]: no agent named 'biling' (did you mean 'billing'?)",
    ),
    (
        "handoff to self",
        BASE + "    handoffs: [front]\n",
        "g.yaml:5 agents.front.handoffs[0]: an agent cannot hand off to itself",
    ),
    (
        "unknown key with suggestion",
        BASE + "    handof: [x]\n",
        "g.yaml:5 agents.front.handof: unknown key 'handof' (did you mean 'handoffs'?)",
    ),
    (
        "unknown top-level key",
        "sesion: {}\n" + BASE,
        "g.yaml:1 sesion: unknown key 'sesion' (did you mean 'session'?)",
    ),
    (
        "missing start agent",
        BASE.replace("start: front", "start: frnt"),
        "g.yaml:1 start: no agent named 'frnt' (did you mean 'front'?)",
    ),
    (
        "missing start key",
        BASE.replace("start: front\n", ""),
        "g.yaml:1 start: missing required key 'start'",
    ),
    (
        "both instructions",
        BASE + "    instructions_file: a.md\n",
        "g.yaml:3 agents.front: give exactly one of instructions, instructions_file",
    ),
    (
        "instructions file missing",
        BASE.replace("instructions: Hello.", "instructions_file: nope.md"),
        "g.yaml:4 agents.front.instructions_file: file not found: nope.md",
    ),
    (
        "unknown voice",
        "session:\n  voice: nova\n" + BASE,
        "g.yaml:2 session.voice: unknown voice 'nova' (voices: alloy, ash, ballad, coral, "
        "echo, sage, shimmer, verse, marin, cedar, or {id: ...})",
    ),
    (
        "voice typo",
        "session:\n  voice: marine\n" + BASE,
        "g.yaml:2 session.voice: unknown voice 'marine' (did you mean 'marin'?)",
    ),
    (
        "voice on a non-starting agent",
        BASE + "  other:\n    instructions: x\n    voice: ash\n",
        "g.yaml:7 agents.other.voice: only the starting agent may set a voice: the voice "
        "cannot change once the assistant has spoken (set session.voice instead)",
    ),
    (
        "unknown placeholder",
        BASE.replace("Hello.", "|\n      Hi.\n      Your number is {{ caler }}."),
        "g.yaml:6 agents.front.instructions: unknown placeholder {{ caler }} (did you mean "
        "'caller'?) (known: caller, dialed, now, call_id, graph, header.<Name>, var.<NAME>)",
    ),
]


@cases(CASES)
def test_broken_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert_graph_error(tmp_path, yaml_text, expected)
