"""Loading the bundled configs, the check/schema commands, and the config hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsonschema
import pytest

from callserver.graph import Config, ConfigError, load_config
from callserver.graph.commands import check, json_schema
from callserver.graph.yamlsrc import parse_yaml

CONFIG = Path(__file__).resolve().parent.parent / "config"


def test_config_dir_loads_with_no_env() -> None:
    cfg = load_config(CONFIG, env={})
    assert set(cfg.graphs) == {"frontdesk", "frontdesk_live", "orders", "reception", "reminders"}
    assert cfg.routes.default_graph == "frontdesk"
    assert any("ORDERS_API_TOKEN" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    "name", ["agents.yaml", "frontdesk_live.yaml", "orders.yaml", "reception.yaml"]
)
def test_each_graph_file_loads_alone(name: str) -> None:
    cfg = load_config(CONFIG / name, env={})
    assert len(cfg.graphs) == 1
    (graph,) = cfg.graphs.values()
    assert cfg.routes.default_graph == graph.name


def test_default_graph_is_the_guides_front_desk() -> None:
    graph = load_config(CONFIG / "agents.yaml").graphs["frontdesk"]
    assert graph.start == "customer_service"
    plans = graph.agents
    assert {p.name for p in plans.values()} == {
        "Customer Service",
        "Billing Support",
        "Technical Support",
    }
    assert [t.name for t in plans["customer_service"].tools] == [
        "get_weather",
        "book_appointment",
        "end_call",
    ]
    assert [t for t, _ in plans["customer_service"].handoffs] == ["billing", "technical"]
    assert [t for t, _ in plans["billing"].handoffs] == ["customer_service"]


def test_hash_is_stable_and_covers_prompt_files(tmp_path: Path) -> None:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG, copy)
    first = load_config(copy, env={}).config_hash
    assert load_config(copy, env={}).config_hash == first
    assert len(first) == 64
    prompt = copy / "prompts" / "customer_service.md"
    prompt.write_text(prompt.read_text() + "\nBe kind.\n")
    assert load_config(copy, env={}).config_hash != first


def test_check_summary_and_exit_code() -> None:
    code, text = check(CONFIG)
    assert code == 0
    assert "graph frontdesk (" in text
    assert "handoff customer_service -> billing" in text
    assert "orders-line -> graph orders" in text
    assert "blocked-prefix -> reject 403" in text
    assert "default -> graph frontdesk" in text
    assert text.endswith("OK")


def test_check_reports_errors(tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    bad.write_text("start: a\nagents:\n  a:\n    instructions: hi\n    tols: []\n")
    code, text = check(bad)
    assert code == 1
    assert f"{bad}:5 agents.a.tols: unknown key 'tols' (did you mean 'tools'?)" in text
    assert text.endswith(f"1 error in {bad}")


def test_json_schema_validates_the_bundled_yaml() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for file in CONFIG.glob("*.yaml"):
        data = parse_yaml(file.read_text()).data
        assert not list(validator.iter_errors(data)), file


def test_config_type() -> None:
    assert isinstance(load_config(CONFIG, env={}), Config)


def test_missing_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/config")
    assert str(info.value) == "/nonexistent/config:1 (file): no such file or directory"
