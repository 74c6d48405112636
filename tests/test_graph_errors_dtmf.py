"""Broken DTMF sections, each with its exact message, path and line."""

from __future__ import annotations

from pathlib import Path

from tests.graph_errors_support import BASE, Case, assert_graph_error, cases

CASES: list[Case] = [
    (
        "dtmf handoff typo",
        BASE + "  billing:\n    instructions: B.\ndtmf:\n  keys:\n    1: {handoff: biling}\n",
        "g.yaml:9 dtmf.keys.1.handoff: no agent named 'biling' (did you mean 'billing'?)",
    ),
    (
        "dtmf transfer target",
        BASE + "dtmf:\n  keys:\n    0: {transfer: '+14155550100'}\n",
        "g.yaml:7 dtmf.keys.0.transfer: transfer target '+14155550100' must be tel:+<number> or "
        "sip:<user>@<host>",
    ),
    (
        "dtmf sequence without #",
        BASE + "dtmf:\n  keys:\n    12: {end_call: true}\n",
        "g.yaml:7 dtmf.keys.12: invalid DTMF key '12': use one key (0-9, * or #) or a sequence "
        "of them ending in '#', e.g. '123#'",
    ),
    (
        "dtmf key that is no key",
        BASE + "dtmf:\n  keys:\n    A: {end_call: true}\n",
        "g.yaml:7 dtmf.keys.A: invalid DTMF key 'A': use one key (0-9, * or #) or a sequence "
        "of them ending in '#', e.g. '123#'",
    ),
    (
        "dtmf two actions",
        BASE + "dtmf:\n  keys:\n    '*': {message: hi, end_call: true}\n",
        "g.yaml:7 dtmf.keys.*: give exactly one of handoff, transfer, end_call, message",
    ),
    (
        "dtmf end_call false",
        BASE + "dtmf:\n  keys:\n    9: {end_call: false}\n",
        "g.yaml:7 dtmf.keys.9.end_call: end_call: false does nothing (write end_call: true, or "
        "remove the key)",
    ),
    (
        "dtmf unmatched policy",
        BASE + "dtmf:\n  unmatched: relay\n",
        "g.yaml:6 dtmf.unmatched: input should be 'message' or 'ignore'",
    ),
    (
        "dtmf timeout too long",
        BASE + "dtmf:\n  inter_digit_timeout: 1m\n",
        "g.yaml:6 dtmf.inter_digit_timeout: input should be less than or equal to 10",
    ),
]


@cases(CASES)
def test_broken_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert_graph_error(tmp_path, yaml_text, expected)
