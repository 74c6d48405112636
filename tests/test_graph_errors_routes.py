"""Broken routes.yaml files, each with its exact message, path and line."""

from __future__ import annotations

from pathlib import Path

from tests.graph_errors_support import BASE, Case, assert_reported, cases

ROUTE_CASES: list[Case] = [
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


@cases(ROUTE_CASES)
def test_broken_routes(tmp_path: Path, yaml_text: str, expected: str) -> None:
    (tmp_path / "frontdesk.yaml").write_text(BASE)
    (tmp_path / "routes.yaml").write_text(yaml_text)
    assert_reported(tmp_path, tmp_path, expected)
