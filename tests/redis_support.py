"""Helpers for tests against the real Redis server: reachability policy and a cuttable link.

Tests use a dedicated database (15 by default) *and* a unique key prefix each, and delete
their keys afterwards, so they can run next to a developer's own Redis data.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from callserver.calls.redis_client import connect
from tests.tcp_proxy import TcpProxy

__all__ = ["TEST_REDIS_URL", "TcpProxy", "client_for", "delete_prefix", "require_redis"]

TEST_REDIS_URL = os.environ.get("CALLSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis(url: str = TEST_REDIS_URL) -> None:
    """Skip when Redis is unreachable -- except under ``CI=true``, where that is a failure."""
    try:
        client = SyncRedis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        reason = f"Redis not reachable at {url}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: Redis tests must run)")
        pytest.skip(reason)


def client_for(url: str, **kwargs: Any) -> Redis:
    """An asyncio client configured like the service's (short timeouts, str responses)."""
    return connect(url, **kwargs)


async def delete_prefix(url: str, prefix: str) -> None:
    client = client_for(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
