"""Helpers for the broken-config tables: a minimal valid graph, and how a case is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.graph import ConfigError, load_config

__all__ = ["BASE", "Case", "assert_graph_error", "assert_reported", "cases"]

BASE = """\
start: front
agents:
  front:
    instructions: Hello.
"""
"""A minimal valid graph, for cases that only add a top-level section."""

Case = tuple[str, str, str]
"""(test id, graph YAML, one exact ``file:line path: message`` the loader must report)."""


def cases(table: list[Case]) -> pytest.MarkDecorator:
    """Parametrize a test over a table, each case named by its id."""
    return pytest.mark.parametrize(
        ("yaml_text", "expected"), [c[1:] for c in table], ids=[c[0] for c in table]
    )


def assert_graph_error(tmp_path: Path, yaml_text: str, expected: str) -> None:
    """Loading ``yaml_text`` as one graph file fails, and ``expected`` is among the issues."""
    (tmp_path / "g.yaml").write_text(yaml_text)
    assert_reported(tmp_path, tmp_path / "g.yaml", expected)


def assert_reported(tmp_path: Path, config: Path, expected: str) -> None:
    """Loading ``config`` (a file or directory in ``tmp_path``) fails with ``expected`` among
    the issues, its paths shown relative to ``tmp_path``."""
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    messages = [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]
    assert expected in messages, messages
