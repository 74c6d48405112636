"""Broken configs as a whole: every mistake reported at once, across files, and by
``callserver check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.graph import ConfigError, load_config
from tests.conftest import ROOT
from tests.graph_errors_support import BASE


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
