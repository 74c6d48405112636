"""Routing calls to graphs: dialed number, caller prefix/pattern, SIP headers, rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from callserver.graph import Config, load_config
from callserver.graph.context import CallInfo

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "start: a\nagents:\n  a: {instructions: x}\n"
ROUTES = """\
routes:
  - name: vip
    match:
      headers:
        - {name: X-Tier, equals: gold}
    graph: sales
  - name: tenant
    match:
      headers:
        - {name: x-tenant, pattern: '4[0-9]'}
      dialed_prefix: '+1 800'
    graph: support
  - name: blocked
    match:
      caller_prefix: [+1900, '+1976']
    reject: 486
  - name: uk
    match:
      caller_pattern: '\\+44.*'
    graph: support
  - name: sales-line
    match:
      dialed: +1 (800) 555-0100
    graph: sales
default: {reject: 480}
"""


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("routes")
    (root / "sales.yaml").write_text(GRAPH)
    (root / "support.yaml").write_text(GRAPH)
    (root / "routes.yaml").write_text(ROUTES)
    return load_config(root)


def call(caller: str | None, dialed: str | None, *headers: tuple[str, str]) -> CallInfo:
    return CallInfo(call_id="c", caller=caller, dialed=dialed, sip_headers=headers)


@pytest.mark.parametrize(
    ("info", "graph", "code", "route"),
    [
        (call("+15551", "+18005550100"), "sales", None, "sales-line"),
        (call("+15551", "+18005550199"), None, 480, "default"),
        (call("+19005551234", "+18005550100"), None, 486, "blocked"),
        (call("+19765551234", "+18005550100"), None, 486, "blocked"),
        (call("+442071234567", "+18005550199"), "support", None, "uk"),
        (call("+15551", "+18005550100", ("X-Tier", "gold")), "sales", None, "vip"),
        (
            call("+19005551234", "+1", ("x-tier", "silver"), ("X-Tier", "gold")),
            "sales",
            None,
            "vip",
        ),
        (call("+15551", "+18005550100", ("X-Tenant", "42")), "support", None, "tenant"),
        (call("+15551", "+18005550100", ("X-Tenant", "420")), "sales", None, "sales-line"),
        (call("+15551", "+17005550100", ("X-Tenant", "42")), None, 480, "default"),
        (call(None, None), None, 480, "default"),
    ],
)
def test_routes(
    cfg: Config, info: CallInfo, graph: str | None, code: int | None, route: str
) -> None:
    result = cfg.route(info)
    assert (result.graph.name if result.graph else None, result.reject_sip_code) == (graph, code)
    assert result.route_name == route


def test_no_match_and_no_default_rejects_603(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GRAPH)
    (tmp_path / "routes.yaml").write_text("routes:\n  - match: {dialed: '+1'}\n    graph: a\n")
    result = load_config(tmp_path).route(call("+2", "+3"))
    assert (result.graph, result.reject_sip_code, result.route_name) == (None, 603, "no_match")


def test_bundled_routes_by_dialed_number() -> None:
    cfg = load_config(ROOT / "config", env={})
    names = {
        "+18005550100": "orders",
        "+18005550101": "reception",
        "+18005550102": "reception",
        "+18005551212": "frontdesk",
    }
    for dialed, name in names.items():
        result = cfg.route(call("+14255551212", dialed))
        assert result.graph is not None and result.graph.name == name
    blocked = cfg.route(call("+19005550000", "+18005551212"))
    assert blocked.reject_sip_code == 403 and blocked.route_name == "blocked-prefix"


def test_single_graph_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "only.yaml").write_text(GRAPH)
    result = load_config(tmp_path).route(call(None, None))
    assert result.graph is not None and result.graph.name == "only"
    assert result.route_name == "default"
