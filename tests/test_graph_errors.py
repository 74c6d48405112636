"""A table of broken configs, each with its exact message, path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.graph import ConfigError, load_config
from tests.conftest import ROOT

BASE = """\
start: front
agents:
  front:
    instructions: Hello.
"""

CASES: list[tuple[str, str, str]] = [
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


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_graph(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "g.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "g.yaml", env={})
    messages = [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]
    assert expected in messages, messages


ROUTE_CASES: list[tuple[str, str, str]] = [
    (
        "route to a missing graph",
        "routes:\n  - match: {dialed: '+1800'}\n    graph: frontdesc\n",
        "routes.yaml:3 routes[0].graph: no graph named 'frontdesc' (did you mean 'frontdesk'?)",
    ),
    (
        "default to a missing graph",
        "default: nope\n",
        "routes.yaml:1 default: no graph named 'nope' (known: frontdesk)",
    ),
    (
        "route with two actions",
        "routes:\n  - match: {dialed: '+1800'}\n    graph: frontdesk\n    reject: 486\n",
        "routes.yaml:2 routes[0]: give exactly one of graph, reject",
    ),
    (
        "bad SIP code",
        "routes:\n  - match: {dialed: '+1800'}\n    reject: 200\n",
        "routes.yaml:3 routes[0].reject: input should be greater than or equal to 400",
    ),
    (
        "empty match",
        "routes:\n  - match: {}\n    graph: frontdesk\n",
        "routes.yaml:2 routes[0].match: empty match: it would match every call (use 'default' "
        "instead)",
    ),
    (
        "header match with no test",
        "routes:\n  - match:\n      headers: [{name: X-Tenant}]\n    graph: frontdesk\n",
        "routes.yaml:3 routes[0].match.headers[0]: give exactly one of equals, pattern",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [c[1:] for c in ROUTE_CASES], ids=[c[0] for c in ROUTE_CASES]
)
def test_broken_routes(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "frontdesk.yaml").write_text(BASE)
    (tmp_path / "routes.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    messages = [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]
    assert expected in messages, messages


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "session:\n  voice: nova\n"
        "tools:\n  w: nosuch.mod:f\n"
        "start: front\n"
        "agents:\n  front:\n    instructions: Hi\n    handoffs: [bill]\n    tools: [w]\n"
        "  bill2:\n    instructions: x\n    extra: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "g.yaml")
    lines = [(i.line, i.path) for i in info.value.issues]
    assert lines == [
        (2, "session.voice"),
        (4, "tools.w.function"),
        (9, "agents.front.handoffs[0]"),
        (13, "agents.bill2.extra"),
    ]
    assert str(info.value).count("\n") == 3


def test_every_mistake_in_one_file_is_reported() -> None:
    """Invalid parts are pruned, so cross-reference checks still run on the rest."""
    path = Path(__file__).parent / "graph_fixtures" / "broken" / "agents.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    shown = [str(i).replace(str(path.parent) + "/", "") for i in info.value.issues]
    assert [s.split(" ", 2)[:2] for s in shown] == [
        ["agents.yaml:5", "session.voice:"],
        ["agents.yaml:6", "session.turn_detection.eagernes:"],
        ["agents.yaml:8", "tools.weather.function:"],
        ["agents.yaml:9", "tools.lookup:"],
        ["agents.yaml:14", "tools.order.url:"],
        ["agents.yaml:14", "tools.order.url:"],
        ["agents.yaml:15", "tools.order.headers.Authorization:"],
        ["agents.yaml:16", "tools.g:"],
        ["agents.yaml:20", "agents.front.instructions:"],
        ["agents.yaml:21", "agents.front.tools[1]:"],
        ["agents.yaml:22", "agents.front.handof:"],
        ["agents.yaml:23", "agents.front.handoffs[1]:"],
        ["agents.yaml:25", "agents.billing.instructions_file:"],
        ["agents.yaml:26", "agents.billing.voice:"],
        ["agents.yaml:27", "limits.max_duration:"],
    ]
    assert "agents.yaml:25 agents.billing.instructions_file: file not found: missing.md" in shown


def test_several_graphs_need_routes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(BASE)
    with pytest.raises(ConfigError, match=r"several graphs but no routes\.yaml"):
        load_config(tmp_path)


def test_duplicate_graph_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\n" + BASE)
    (tmp_path / "b.yaml").write_text("name: same\n" + BASE)
    (tmp_path / "routes.yaml").write_text("default: same\n")
    with pytest.raises(ConfigError, match=r"b.yaml:1 name: graph 'same' is also defined in"):
        load_config(tmp_path)


def test_check_reports_yaml_mistakes_where_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``callserver check`` on the bundled directory with one broken graph file (issue 13,
    item 9): a missing colon is reported on its own line, routes.yaml is not blamed for the
    broken file's graph, and a duplicate key is named by its path."""
    import shutil

    from callserver.cli import main

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    orders = config / "orders.yaml"
    text = orders.read_text()
    line = text.splitlines().index("start: orders_desk") + 1
    orders.write_text(text.replace("start: orders_desk", "start orders_desk"))
    reception = config / "reception.yaml"
    text = reception.read_text()
    assert "    instructions: |" in text
    reception.write_text(
        text.replace("    instructions: |", "    name: Again\n    instructions: |", 1)
    )
    dup_line = reception.read_text().splitlines().index("    name: Again") + 1
    assert main(["check", str(config)]) == 1
    out = capsys.readouterr().out.replace(str(config) + "/", "")
    errors = out.splitlines()[:-1]
    assert len(errors) == 2, out
    assert errors[0].startswith(f"orders.yaml:{line} (yaml): invalid YAML: could not find"), out
    expected = f"reception.yaml:{dup_line} agents.receptionist.name: duplicate key (first at line"
    assert errors[1].startswith(expected), out
    assert "routes.yaml" not in out
    assert out.splitlines()[-1] == f"2 errors in {config}"
