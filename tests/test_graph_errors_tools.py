"""Broken tools, each with its exact message, path and line: references, functions, types,
transfers, secrets, URLs, guardrails, schemas."""

from __future__ import annotations

from pathlib import Path

from tests.graph_errors_support import BASE, Case, assert_graph_error, cases

CASES: list[Case] = [
    (
        "unknown tool",
        BASE + "    tools: [end_cal]\n",
        "g.yaml:5 agents.front.tools[0]: no tool named 'end_cal' (did you mean 'end_call'?)",
    ),
    (
        "unresolvable function",
        "tools:\n  w: callserver.examples.frontdesk:get_wether\n" + BASE,
        "g.yaml:2 tools.w.function: cannot import 'callserver.examples.frontdesk:get_wether': "
        "callserver.examples.frontdesk has no 'get_wether'",
    ),
    (
        "unresolvable module",
        "tools:\n  w: nosuchmodule.tools:f\n" + BASE,
        "g.yaml:2 tools.w.function: cannot import 'nosuchmodule.tools:f': no module named "
        "'nosuchmodule'",
    ),
    (
        "not callable",
        "tools:\n  w: tests.graph_fixtures.tools:NOT_CALLABLE\n" + BASE,
        "g.yaml:2 tools.w.function: 'tests.graph_fixtures.tools:NOT_CALLABLE' is not a "
        "function (found int)",
    ),
    (
        "tool type typo",
        "tools:\n  w:\n    type: htp\n" + BASE,
        "g.yaml:2 tools.w: unknown type 'htp' (did you mean 'http'?) (expected: python, http, "
        "end_call, transfer_call)",
    ),
    (
        "bad transfer target",
        "tools:\n  t:\n    type: transfer_call\n    target: +14155550123\n" + BASE,
        "g.yaml:4 tools.t.target: transfer target '+14155550123' must be tel:+<number> or "
        "sip:<user>@<host>",
    ),
    (
        "missing env var",
        "tools:\n  h:\n    type: http\n    description: d\n    url: https://x.test/a\n"
        "    headers:\n      Authorization: Bearer ${NOPE_TOKEN}\n" + BASE,
        "g.yaml:7 tools.h.headers.Authorization: environment variable NOPE_TOKEN is not set",
    ),
    (
        "inline secret",
        "tools:\n  h:\n    type: http\n    description: d\n    url: https://x.test/a\n"
        "    headers:\n      X-Api-Key: abc123\n" + BASE,
        "g.yaml:7 tools.h.headers.X-Api-Key: header X-Api-Key looks secret: take its value "
        "from an environment variable, e.g. 'Bearer ${API_TOKEN}'",
    ),
    (
        "templated host",
        "tools:\n  h:\n    type: http\n    description: d\n    url: https://{host}/a\n"
        "    parameters: {type: object, properties: {host: {type: string}}}\n" + BASE,
        "g.yaml:5 tools.h.url: the url's host cannot be templated: the model must not choose hosts",
    ),
    (
        "url arg not a parameter",
        "tools:\n  h:\n    type: http\n    description: d\n    url: https://x.test/{id}\n" + BASE,
        "g.yaml:5 tools.h.url: url uses {id} but parameters has no property 'id'",
    ),
    (
        "guardrail not callable",
        "guardrails:\n  g: tests.graph_fixtures.tools:NOT_CALLABLE\n" + BASE,
        "g.yaml:2 guardrails.g.function: 'tests.graph_fixtures.tools:NOT_CALLABLE' is not a "
        "function or an OutputGuardrail (found int)",
    ),
    (
        "reserved tool name",
        "tools:\n  transfer_to_x: {type: end_call}\n" + BASE,
        "g.yaml:2 tools.transfer_to_x: tool names starting with 'transfer_to_' are reserved "
        "for handoffs",
    ),
    (
        "strict schema needs every property required",
        "tools:\n  h:\n    type: http\n    description: d\n    url: https://x.test/a\n"
        "    parameters:\n      type: object\n      properties: {a: {type: string}, "
        "b: {type: string}}\n      required: [a]\n" + BASE,
        "g.yaml:9 tools.h.parameters.required: strict tools need every property required; make "
        "optional ones nullable (type: [string, 'null']) and drop 'required'",
    ),
]


@cases(CASES)
def test_broken_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert_graph_error(tmp_path, yaml_text, expected)
