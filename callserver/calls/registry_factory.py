"""Choose the registry from settings: in-process by default, Redis when ``REDIS_URL`` is set.

Kept apart from ``app.py`` so the lifespan stays a few lines and the ``redis`` package is only
imported by deployments that use it.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from callserver.calls.registry import CallRegistry, InMemoryRegistry, min_cap
from callserver.settings import Settings

if TYPE_CHECKING:
    from callserver.calls.coordination import Coordinator

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 15.0
REDIS_OP_TIMEOUT_S = 1.0


def default_instance_id() -> str:
    """host:pid -- unique per process, readable in logs and in ``GET /admin/calls``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def admission_cap(settings: Settings) -> int | None:
    """The cap a call can be checked against before it reaches an instance (Twilio's voice
    webhook): alone, this instance's (and the fleet cap if tighter); with Redis, only the
    fleet cap, because OpenAI's webhook may then reach any instance, each with its own cap.
    """
    if settings.redis_url:
        return settings.fleet_max_calls
    return min_cap(settings.max_concurrent_calls, settings.fleet_max_calls)


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
        if settings.fleet_max_calls is not None:
            log.warning(
                "CALLSERVER_FLEET_MAX_CALLS without REDIS_URL: only this instance's calls "
                "count towards it (instances share a fleet cap through Redis)"
            )
        registry = InMemoryRegistry(
            max_calls=min_cap(settings.max_concurrent_calls, settings.fleet_max_calls),
            dedupe_ttl_s=settings.dedupe_ttl_s,
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
        max_calls=settings.fleet_max_calls,
        instance_max_calls=settings.max_concurrent_calls,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        lease_s=lease,
        key_prefix=prefix,
        op_timeout_s=REDIS_OP_TIMEOUT_S,
        local_fallback=local_fallback,
    )
    return registry, Coordinator(registry, sweep_interval_s=sweep, owns_client=True)
