"""Broken graph files, each with its exact message, path and line: file shape, names, YAML,
guardrails, durations, time zones, session settings."""

from __future__ import annotations

from pathlib import Path

from tests.graph_errors_support import BASE, Case, assert_graph_error, cases

CASES: list[Case] = [
    (
        "unknown time zone",
        "timezone: Mars/Olympus\n" + BASE,
        "g.yaml:1 timezone: unknown time zone 'Mars/Olympus' (e.g. Europe/Paris)",
    ),
    (
        "clashing agent names",
        BASE + "  other:\n    name: FRONT\n    instructions: x\n",
        "g.yaml:6 agents.other.name: agent name 'FRONT' clashes with agent 'front' (both hand "
        "off as transfer_to_front)",
    ),
    (
        "invalid agent key",
        BASE + "  bad key:\n    instructions: x\n",
        "g.yaml:5 agents.bad key: invalid name 'bad key': use letters, digits, '_' and '-' (at "
        "most 64)",
    ),
    (
        "not a mapping",
        "- just a list\n",
        "g.yaml:1 (top level): expected a mapping of keys",
    ),
    (
        "missing guardrail",
        BASE + "    output_guardrails: [no_pwd]\n",
        "g.yaml:5 agents.front.output_guardrails[0]: no guardrail named 'no_pwd'",
    ),
    (
        "bad regex",
        "guardrails:\n  b:\n    type: blocked_phrases\n    patterns: ['(']\n" + BASE,
        "g.yaml:4 guardrails.b.patterns[0]: invalid regular expression '(': missing ), "
        "unterminated subpattern at position 0",
    ),
    (
        "duration too long",
        "limits:\n  max_duration: 2h\n" + BASE,
        "g.yaml:2 limits.max_duration: input should be less than or equal to 3600",
    ),
    (
        "bad duration",
        "limits:\n  idle_timeout: soon\n" + BASE,
        "g.yaml:2 limits.idle_timeout: not a duration: 'soon' (write e.g. 45, '45s', '5m', '1h')",
    ),
    (
        "duplicate key",
        BASE + "  front:\n    instructions: again\n",
        "g.yaml:5 agents.front: duplicate key (first at line 3)",
    ),
    (
        "yaml syntax",
        "start: [front\n",
        "g.yaml:2 (yaml): invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "turn detection field of the other type",
        "session:\n  turn_detection: {type: server_vad, eagerness: high}\n" + BASE,
        "g.yaml:2 session.turn_detection.eagerness: unknown key 'eagerness'",
    ),
]


@cases(CASES)
def test_broken_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert_graph_error(tmp_path, yaml_text, expected)
