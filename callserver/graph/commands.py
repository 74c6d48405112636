"""What ``callserver check`` and ``callserver schema`` print; the CLI only wires them up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from callserver.graph.analysis_schema import post_call_lines
from callserver.graph.errors import ConfigError
from callserver.graph.graph_models import GraphFile
from callserver.graph.loader import load_config
from callserver.graph.outbound_models import VariableSpec
from callserver.graph.route_models import RoutesFile
from callserver.graph.spec import Config, GraphSpec


def check(
    path: str | os.PathLike[str] = "config", webhook_events: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Validate a config: ``(0, summary)`` when usable, ``(1, every error)`` when not.

    ``webhook_events`` (engine -> the incoming-call event to subscribe to) is supplied by
    the caller: which webhook an engine sends is not the graph layer's knowledge.
    """
    try:
        cfg = load_config(path)
    except ConfigError as err:
        return 1, explain(err, path)
    return 0, summary(cfg, webhook_events or {})


def explain(err: ConfigError, path: str | os.PathLike[str]) -> str:
    """What every command prints for a config it cannot use: one ``file:line key: problem``
    line per issue, a count, and a hint when the path itself is missing (a relative
    default such as ``config`` only exists inside the project folder)."""
    count = len(err.issues)
    text = f"{err}\n{count} error{'s' if count != 1 else ''} in {path}"
    if not Path(path).exists():
        text += (
            f"\n{path} is resolved from the current directory ({Path.cwd()}): run from the "
            "project folder, or pass --config / set CALLSERVER_CONFIG"
        )
    return text


def summary(cfg: Config, webhook_events: Mapping[str, str] | None = None) -> str:
    """A human-readable overview of a loaded config."""
    events = webhook_events or {}
    lines = [f"config {cfg.config_hash[:12]} ({len(cfg.files)} files)"]
    for graph in cfg.graphs.values():
        lines.extend(_graph_lines(graph, events.get(graph.engine)))
    lines.append("routes:")
    for route in cfg.routes.routes:
        action = f"graph {route.graph}" if route.graph else f"reject {route.reject}"
        lines.append(f"  {route.name} -> {action}")
    if cfg.routes.default_graph:
        lines.append(f"  default -> graph {cfg.routes.default_graph}")
    elif cfg.routes.default_reject:
        lines.append(f"  default -> reject {cfg.routes.default_reject}")
    else:
        lines.append("  no match -> reject 603")
    subscribe = sorted({events[g.engine] for g in cfg.graphs.values() if g.engine in events})
    if subscribe:
        lines.append(f"subscribe the OpenAI webhook to: {', '.join(subscribe)}")
    lines.extend(f"warning: {w}" for w in cfg.warnings)
    lines.append("OK")
    return "\n".join(lines)


def _graph_lines(graph: GraphSpec, webhook_event: str | None) -> list[str]:
    lim = graph.limits
    voice = graph.voice if isinstance(graph.voice, str) else graph.voice.get("id")
    model = graph.session.model
    if graph.live is not None:
        backend = graph.live.backend_model
        model = f"{graph.live.model}" + (f" (backend {backend})" if backend else "")
    engine = f"engine {graph.engine}" + (f" (webhook {webhook_event})" if webhook_event else "")
    out = [
        f"graph {graph.name} ({graph.file}): {engine}, start {graph.start}, model {model}, "
        f"voice {voice}",
        f"  limits: max_duration {lim.max_duration_s:g}s, idle_timeout "
        f"{'-' if lim.idle_timeout_s is None else f'{lim.idle_timeout_s:g}s'}, max_concurrent "
        f"{'-' if lim.max_concurrent is None else lim.max_concurrent}",
    ]
    for key, plan in graph.agents.items():
        tools = ", ".join(t.name for t in plan.tools) or "-"
        guards = ", ".join(str(g.get_name()) for g in plan.guardrails) or "-"
        out.append(f"  agent {key} ({plan.name!r}): tools [{tools}], guardrails [{guards}]")
        for target, _ in plan.handoffs:
            out.append(f"    handoff {key} -> {target}")
    if graph.variables:
        declared = [f"{name} ({_need(v)})" for name, v in graph.variables.items()]
        out.append(f"  variables: {', '.join(declared)}")
    if graph.outbound is not None:
        o = graph.outbound
        dialer = o.dialer or ("live" if graph.engine == "live" else "twilio")
        caller = o.caller_number or "(CALLSERVER_CALLER_NUMBER)"
        out.append(
            f"  outbound: dialer {dialer}, caller {caller}, on_voicemail {o.on_voicemail}, "
            f"detection {o.voicemail_detection:g}s, ring {o.ring_timeout:g}s"
        )
    dtmf = graph.dtmf
    if dtmf.enabled:
        keys = ", ".join(f"{k} {a.kind} {a.value}".rstrip() for k, a in dtmf.keys.items())
        out.append(f"  dtmf: [{keys or '-'}], unmatched {dtmf.unmatched}")
    out.extend(post_call_lines(graph.post_call))
    return out


def _need(variable: VariableSpec) -> str:
    if variable.needed:
        return "required"
    return f"default {variable.default!r}" if variable.default else "optional"


def json_schema() -> dict[str, Any]:
    """JSON Schema for config files: a graph file, or routes.yaml."""
    adapter: TypeAdapter[Any] = TypeAdapter(GraphFile | RoutesFile)
    schema = adapter.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "callserver config (graph file or routes.yaml)"
    return schema
