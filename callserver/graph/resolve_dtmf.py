"""Load-time checks of a graph's ``dtmf:`` section that pydantic cannot make alone: key
syntax (reported at the key's own line) and handoffs to agents of the graph."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from callserver.graph.dtmf_models import (
    ACTIONS,
    KEY_PATTERN,
    DtmfAction,
    DtmfPlan,
    DtmfSpec,
    key_text,
)
from callserver.graph.errors import ConfigIssue, no_such
from callserver.graph.yamlsrc import LineDict, locate

Warn = Callable[[str], None]


def resolve_dtmf(
    spec: DtmfSpec | None,
    *,
    agents: Collection[str],
    data: Any,
    shown: str,
    known_bad: Collection[tuple[str, str]] = (),
    warn: Warn | None = None,
) -> tuple[DtmfPlan, list[ConfigIssue]]:
    """The graph's ``DtmfPlan`` and every problem found (the plan is unusable if any)."""
    if spec is None:
        return DtmfPlan(), []
    raw = data.get("dtmf") if isinstance(data, LineDict) else None
    raw_keys = raw.get("keys") if isinstance(raw, LineDict) else None
    written = {key_text(k): k for k in raw_keys} if isinstance(raw_keys, LineDict) else {}
    issues: list[ConfigIssue] = []

    def report(key: str, sub: str | None, message: str) -> None:
        loc: list[str | int] = ["dtmf", "keys", written.get(key, key)]
        if sub is not None:
            loc.append(sub)
        line, _ = locate(data, loc)
        path = f"dtmf.keys.{key}" + (f".{sub}" if sub else "")
        issues.append(ConfigIssue(shown, line, path, message))

    keys: dict[str, DtmfAction] = {}
    for key, action in spec.keys.items():
        if not KEY_PATTERN.match(key):
            report(
                key,
                None,
                f"invalid DTMF key {key!r}: use one key (0-9, * or #) or a sequence of them "
                "ending in '#', e.g. '123#'",
            )
            continue
        kind = next(name for name in ACTIONS if getattr(action, name) is not None)
        value = getattr(action, kind)
        if kind == "handoff" and value not in agents:
            if ("agents", value) not in known_bad:
                report(key, "handoff", no_such("agent", value, agents))
            continue
        keys[key] = DtmfAction(kind, "" if value is True else str(value))
    if not spec.keys and spec.unmatched == "ignore" and warn is not None:
        warn("dtmf: no keys and 'unmatched: ignore': key presses do nothing")
    plan = DtmfPlan(
        keys=keys, unmatched=spec.unmatched, inter_digit_timeout_s=spec.inter_digit_timeout
    )
    return plan, issues
