"""Choose the registry from settings: in-process by default, Redis when ``REDIS_URL`` is set.

Kept apart from ``app.py`` so the lifespan stays a few lines and the ``redis`` package is only
imported by deployments that use it.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from callserver.calls.registry import CallRegistry, InMemoryRegistry
from callserver.settings import Settings

if TYPE_CHECKING:
    from callserver.calls.coordination import Coordinator

DEFAULT_LEASE_S = 15.0
REDIS_OP_TIMEOUT_S = 1.0


def default_instance_id() -> str:
    """host:pid -- unique per process, readable in logs and in ``GET /admin/calls``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def make_registry(
    settings: Settings,
    *,
    lease_s: float | None = None,
    sweep_interval_s: float | None = None,
    local_fallback: bool | None = None,
    key_prefix: str | None = None,
) -> tuple[CallRegistry, Coordinator | None]:
    """The registry, plus the coordinator to ``bind``/``start``/``aclose`` when shared.

    Keyword arguments override settings; settings fields ``redis_lease_s``,
    ``redis_sweep_interval_s``, ``redis_local_fallback`` and ``redis_key_prefix`` are used
    when present. Nothing connects here: Redis is first contacted by ``coordinator.start()``
    and ``healthy()``, so an unreachable Redis shows in readyz instead of failing start-up.
    """
    if not settings.redis_url:
        registry = InMemoryRegistry(
            max_calls=settings.max_concurrent_calls, dedupe_ttl_s=settings.dedupe_ttl_s
        )
        return registry, None

    from callserver.calls.coordination import Coordinator
    from callserver.calls.redis_client import connect
    from callserver.calls.redis_registry import RedisRegistry

    lease = lease_s or getattr(settings, "redis_lease_s", None) or DEFAULT_LEASE_S
    sweep = sweep_interval_s or getattr(settings, "redis_sweep_interval_s", None)
    if local_fallback is None:
        local_fallback = bool(getattr(settings, "redis_local_fallback", False))
    prefix = key_prefix or getattr(settings, "redis_key_prefix", None) or "callserver:"
    client = connect(settings.redis_url, op_timeout_s=REDIS_OP_TIMEOUT_S)
    registry = RedisRegistry(
        client,
        instance_id=settings.instance_id or default_instance_id(),
        max_calls=settings.max_concurrent_calls,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        lease_s=lease,
        key_prefix=prefix,
        op_timeout_s=REDIS_OP_TIMEOUT_S,
        local_fallback=local_fallback,
    )
    return registry, Coordinator(registry, sweep_interval_s=sweep, owns_client=True)
