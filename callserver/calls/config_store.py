"""Configs shared between instances by hash, so a call can move with the graph it started on.

A call keeps the graph version it started with for its whole life, also when it moves to
another instance (a deploy hands it over, or a survivor adopts it after a crash) whose own
config may be newer. Each instance publishes every config it loads to Redis, keyed by its
hash: the files themselves, as read. Another instance rebuilds the config from them in a
scratch directory (off the event loop) and checks that the hash matches. Environment
references (``${VAR}``) resolve from the adopting instance's environment, which a deploy
shares; Python tools come from the code it runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from callserver.graph import Config, ConfigError, load_config

log = logging.getLogger(__name__)

TTL_S = 7 * 24 * 3600
"""A config stays fetchable this long after it was last published (calls last far less)."""


class ConfigStore:
    """Publish and fetch configs in Redis under ``<prefix>config:<hash>``."""

    def __init__(self, client: Any, prefix: str, *, op_timeout_s: float = 1.0) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = op_timeout_s
        self._cache: dict[str, Config] = {}

    def _key(self, config_hash: str) -> str:
        return f"{self._prefix}config:{config_hash}"

    async def publish(self, config: Config) -> None:
        """Make ``config`` fetchable by its hash (refreshing its expiry)."""
        self._cache[config.config_hash] = config
        payload = json.dumps(
            {
                "root_file": config.root_file,
                "files": {name: base64.b64encode(raw).decode() for name, raw in config.sources},
            }
        )
        key = self._key(config.config_hash)
        from callserver.calls.redis_client import run_op  # redis only when configured

        await run_op(
            "publish config", lambda: self._client.set(key, payload, ex=TTL_S), self._timeout
        )

    async def fetch(self, config_hash: str) -> Config | None:
        """The config with this hash, rebuilt from Redis; None if unknown or not rebuildable."""
        if config_hash in self._cache:
            return self._cache[config_hash]
        key = self._key(config_hash)
        from callserver.calls.redis_client import run_op

        raw = await run_op("fetch config", lambda: self._client.get(key), self._timeout)
        if not raw:
            return None
        config = await asyncio.to_thread(_rebuild, json.loads(raw), config_hash)
        if config is not None:
            self._cache[config_hash] = config
        return config


def _rebuild(payload: dict[str, Any], config_hash: str) -> Config | None:
    """Write the files into a scratch directory and load them (blocking: run in a thread)."""
    with tempfile.TemporaryDirectory(prefix="callserver-config-") as scratch:
        root = Path(scratch)
        for name, data in payload.get("files", {}).items():
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                log.error("config %s: refusing the path %r", config_hash[:12], name)
                return None
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(data))
        path = root / payload["root_file"] if payload.get("root_file") else root
        try:
            config = load_config(path)
        except ConfigError as exc:
            log.error("config %s does not load here: %s", config_hash[:12], exc)
            return None
    if config.config_hash != config_hash:
        log.error("config %s rebuilt with another hash", config_hash[:12])
        return None
    return config
