"""Agent graphs: YAML config -> validated specs -> fresh agents-SDK objects per call.

The calls layer uses only what this module exports.
"""

from callserver.graph.errors import ConfigError, ConfigIssue
from callserver.graph.loader import load_config
from callserver.graph.routes import RouteResult
from callserver.graph.spec import BuiltGraph, Config, GraphSpec, Limits

__all__ = [
    "BuiltGraph",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "GraphSpec",
    "Limits",
    "RouteResult",
    "load_config",
]
