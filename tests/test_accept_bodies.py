"""The Realtime accept body is built by the SDK once per graph version (accept_bodies.py):
each later call's body must be exactly what the SDK would have built for that call."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callserver.engines.realtime import sdk
from callserver.engines.realtime.accept_bodies import AcceptBodies
from callserver.graph import load_config
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.spec import BuiltGraph
from tests.test_graph_build import INFO

ROOT = Path(__file__).resolve().parent.parent
FIRST = INFO  # the call test_graph_build builds for
SECOND = CallInfo(
    call_id="rtc_second",
    caller="+16505550000",
    dialed="+18005551213",
    sip_headers=[("From", "sip:+16505550000@x"), ("X-Caller-Name", "Bo")],
    received_at=datetime(2026, 12, 2, 9, 1, tzinfo=UTC),
)


def _ctx(info: CallInfo, graph: str) -> CallToolContext:
    return CallToolContext(call=info, graph=graph, controls=None)


async def _direct(built: BuiltGraph, info: CallInfo) -> dict:
    return await sdk.accept_payload(
        agent=built.starting_agent,
        model_name=built.model,
        settings=built.model_settings,
        run_config=built.run_config,
        context=_ctx(info, "g"),
    )


REALTIME_GRAPHS = [
    name
    for name, g in load_config(ROOT / "config", env={}).graphs.items()
    if g.engine == "realtime"
]


@pytest.mark.parametrize("name", REALTIME_GRAPHS)
async def test_reused_body_is_what_the_sdk_builds_for_each_call(name: str) -> None:
    spec = load_config(ROOT / "config", env={}).graphs[name]
    bodies = AcceptBodies()
    for info in (FIRST, SECOND, FIRST):
        built = spec.build(info)
        assert built.version is spec
        got = await bodies.body(built, _ctx(info, name))
        assert got == await _direct(built, info)
    first = await bodies.body(spec.build(FIRST), _ctx(FIRST, name))
    second = await bodies.body(spec.build(SECOND), _ctx(SECOND, name))
    assert first["tools"] is second["tools"]  # built once: the version's, shared read-only


async def test_caller_placeholders_differ_per_call_and_a_reload_rebuilds(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: g\nstart: a\nagents:\n  a:\n    name: A\n"
        "    instructions: 'Caller {{ caller }}, v1'\n"
    )
    bodies = AcceptBodies()
    spec = load_config(graph, env={}).graphs["g"]
    one = await bodies.body(spec.build(FIRST), _ctx(FIRST, "g"))
    two = await bodies.body(spec.build(SECOND), _ctx(SECOND, "g"))
    assert "+14255551212" in one["instructions"] and "+16505550000" in two["instructions"]
    graph.write_text(graph.read_text().replace("v1", "v2").replace("name: A", "name: B"))
    reloaded = load_config(graph, env={}).graphs["g"]
    three = await bodies.body(reloaded.build(FIRST), _ctx(FIRST, "g"))
    assert three["instructions"].endswith("v2")
    assert three == await _direct(reloaded.build(FIRST), FIRST)


async def test_without_a_version_or_past_the_bound_it_still_builds_correctly() -> None:
    spec = load_config(ROOT / "config" / "agents.yaml", env={}).graphs["frontdesk"]
    unversioned = dataclasses.replace(spec.build(SECOND), version=None)
    assert await AcceptBodies().body(unversioned, _ctx(SECOND, "frontdesk")) == await _direct(
        unversioned, SECOND
    )
    small = AcceptBodies(limit=1)
    others = [
        load_config(ROOT / "config" / "agents.yaml", env={}).graphs["frontdesk"] for _ in "ab"
    ]
    for version in (spec, *others, spec):
        built = version.build(FIRST)
        got = await small.body(built, _ctx(FIRST, "frontdesk"))
        assert got == await _direct(built, FIRST)
    assert len(small._bodies) == 1
