"""The ``analysis:`` and ``redact:`` sections: errors at file:line with key paths, the JSON
Schema, ``callserver check``, and which graph's analysis applies after a reload."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from callserver.calls.records import CallRecord
from callserver.config_holder import ConfigHolder
from callserver.graph import ConfigError, load_config
from callserver.graph.commands import check, json_schema
from callserver.graph.yamlsrc import parse_yaml
from callserver.records.post_call_service import PostCallListener
from tests.conftest import DEFAULT_CONFIG

BASE = """\
start: front
agents:
  front:
    instructions: Hello.
"""
ANALYSIS = BASE + "analysis:\n  model: gpt-4.1-mini\n"

CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown key",
        ANALYSIS + "  max_attempts: 2\n  summery: true\n",
        ["g.yaml:8 analysis.summery: unknown key 'summery' (did you mean 'summary'?)"],
    ),
    (
        "missing model",
        BASE + "analysis:\n  summary: true\n",
        ["g.yaml:5 analysis.model: missing required key 'model'"],
    ),
    (
        "nothing to ask",
        ANALYSIS + "  summary: false\n",
        ["g.yaml:5 analysis: nothing to ask: set summary: true, fields or success"],
    ),
    (
        "field type typo",
        ANALYSIS + "  fields:\n    booked: bool\n",
        ["g.yaml:8 analysis.fields.booked: unknown type 'bool' (did you mean 'boolean'?)"],
    ),
    (
        "field name",
        ANALYSIS + "  fields:\n    call-back: string\n",
        [
            "g.yaml:8 analysis.fields.call-back: invalid field name 'call-back': use letters, "
            "digits and '_', not starting with a digit (at most 64)"
        ],
    ),
    (
        "unquoted yes in a string enum",
        ANALYSIS + "  fields:\n    answer:\n      type: string\n      enum:\n        - maybe\n"
        "        - yes\n",
        [
            "g.yaml:12 analysis.fields.answer.enum[1]: enum value true was read by YAML as a "
            "boolean (so are yes/no/on/off): quote it"
        ],
    ),
    (
        "enum of the wrong type, and twice",
        ANALYSIS + "  fields:\n    n:\n      type: integer\n      enum: [1, 2.5, 1]\n",
        [
            "g.yaml:10 analysis.fields.n.enum[1]: enum value 2.5 is not an integer",
            "g.yaml:10 analysis.fields.n.enum[2]: enum value 1 is listed twice",
        ],
    ),
    (
        "enum on a boolean, items on a string",
        ANALYSIS + "  fields:\n    b: {type: boolean, enum: [true]}\n"
        "    s: {type: string, items: string}\n",
        [
            "g.yaml:8 analysis.fields.b.enum: a boolean field cannot have an enum (it is true "
            "or false)",
            "g.yaml:9 analysis.fields.s.items: items is only for type array (this field is a "
            "string)",
        ],
    ),
    (
        "timeout and attempts out of range",
        ANALYSIS + "  timeout: 10m\n  max_attempts: 0\n",
        [
            "g.yaml:7 analysis.timeout: input should be less than or equal to 300",
            "g.yaml:8 analysis.max_attempts: input should be greater than or equal to 1",
        ],
    ),
    (
        "redact kind typo",
        BASE + "redact: [card, emial]\n",
        ["g.yaml:5 redact[1]: unknown kind 'emial' (did you mean 'email'?)"],
    ),
    (
        "redact pattern that does not compile",
        BASE + "redact:\n  - pattern: '(ACC'\n",
        [
            "g.yaml:6 redact[0].pattern: invalid regular expression '(ACC': missing ), "
            "unterminated subpattern at position 0"
        ],
    ),
    (
        "redact pattern that matches everything",
        BASE + "redact:\n  - card\n  - card\n  - {pattern: 'x*', label: '[x]'}\n",
        [
            "g.yaml:7 redact[1]: card is listed twice",
            "g.yaml:8 redact[2].pattern: pattern matches the empty string",
        ],
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_errors(tmp_path: Path, yaml_text: str, expected: list[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    shown = [str(issue).replace(str(tmp_path) + "/", "") for issue in info.value.issues]
    assert shown == expected


def test_a_realtime_model_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(BASE + "analysis:\n  model: gpt-realtime\n")
    [warning] = load_config(path).warnings
    assert "looks like a Realtime model" in warning


def test_json_schema_covers_the_sections() -> None:
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    graph = schema["$defs"]["GraphFile"]["properties"]
    assert graph["analysis"]["anyOf"][0] == {"$ref": "#/$defs/AnalysisSpec"}
    assert set(schema["$defs"]["AnalysisSpec"]["properties"]) == {
        "model",
        "instructions",
        "summary",
        "fields",
        "success",
        "timeout",
        "max_attempts",
    }
    good = parse_yaml(
        ANALYSIS + "  fields:\n    reason: {type: string, enum: [a, b]}\n    n: integer\n"
        "redact: [card, {pattern: 'ACC-\\d+', label: '[acc]'}]\n"
    ).data
    assert list(validator.iter_errors(good)) == []
    for bad in (
        ANALYSIS + "  fields:\n    reason: strin\n",
        ANALYSIS + "  fields:\n    reason: {type: string, requird: false}\n",
        BASE + "redact: [cardd]\n",
    ):
        assert list(validator.iter_errors(parse_yaml(bad).data)), bad


def test_check_prints_analysis_and_redaction() -> None:
    code, text = check(DEFAULT_CONFIG)
    assert code == 0
    assert (
        "  analysis: model gpt-4.1-mini, summary, success, fields [reason, appointment_booked, "
        "appointment, follow_up], timeout 30s x3"
    ) in text.splitlines()
    assert "  redact: [card, email]" in text.splitlines()


async def test_the_graph_a_call_started_with_is_the_one_analysed(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(ANALYSIS.replace("gpt-4.1-mini", "model-one"))
    holder = ConfigHolder.load(path)
    before = holder.current
    record = CallRecord(call_id="rtc_reload", graph="g", config_hash=before.config_hash)
    path.write_text(ANALYSIS.replace("gpt-4.1-mini", "model-two"))
    assert (await holder.reload())[0]
    listener = PostCallListener(None, holder, redact_numbers=False)  # type: ignore[arg-type]
    graph = listener.graph_of(record)
    assert graph is not None and graph.post_call.analysis is not None
    assert graph.post_call.analysis.model == "model-one"
    assert holder.by_hash(holder.current.config_hash) is holder.current
    record.config_hash = "unknown"
    assert listener.graph_of(record).post_call.analysis.model == "model-two"  # type: ignore[union-attr]
