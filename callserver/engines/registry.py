"""Which engines this process runs calls on: the one place an engine is registered."""

from __future__ import annotations

from collections.abc import Callable

from callserver.engines.base import Engine, EngineOptions
from callserver.engines.live.engine import LiveEngine
from callserver.engines.realtime.engine import RealtimeEngine
from callserver.engines.rest import DeadlineRest

ENGINES: dict[str, Callable[..., Engine]] = {
    "realtime": RealtimeEngine,
    "live": LiveEngine,
}
"""Engine name (a graph's ``engine:``) -> its class. Adding an engine: one line here."""


def build_engines(rest: DeadlineRest, options: EngineOptions) -> dict[str, Engine]:
    """One instance of every engine, sharing the process's REST client."""
    return {name: factory(rest, options) for name, factory in ENGINES.items()}
