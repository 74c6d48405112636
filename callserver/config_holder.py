"""The current agent-graph config, swappable at run time (SIGHUP, admin reload).

Calls read ``current`` once when they start and keep what they got, so a reload applies to
new calls only and never changes a call in progress. The last few configs stay reachable
by hash (``by_hash``), so what happens after a call (its analysis) follows the graph the
call started with, not one loaded while it was in progress.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from callserver.graph import Config, ConfigError, load_config

log = logging.getLogger(__name__)

KEEP_CONFIGS = 16
"""Configs kept by hash: more reloads than this during one call is not a real case."""


class ConfigHolder:
    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self._config = config
        self._lock = asyncio.Lock()
        self._recent: collections.OrderedDict[str, Config] = collections.OrderedDict()
        self._remember(config)
        self.on_loaded: list[Callable[[Config], Awaitable[None]]] = []
        """Told about every config a reload makes current (another instance may need it to
        carry on a call that started on it)."""

    def _remember(self, config: Config) -> None:
        self._recent[config.config_hash] = config
        self._recent.move_to_end(config.config_hash)
        while len(self._recent) > KEEP_CONFIGS:
            self._recent.popitem(last=False)

    def by_hash(self, config_hash: str | None) -> Config | None:
        """The config with this hash if it is one of the last few loaded, else None."""
        return self._recent.get(config_hash) if config_hash else None

    @classmethod
    def load(cls, path: Path) -> ConfigHolder:
        """Load at start-up; raises ConfigError so the service refuses to start."""
        return cls(path, load_config(path))

    @property
    def current(self) -> Config:
        return self._config

    async def reload(self) -> tuple[bool, str]:
        """Load the file(s) again off the event loop; keep the old config if invalid."""
        async with self._lock:
            try:
                new = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                log.error("config reload refused; keeping the old config:\n%s", exc)
                return False, str(exc)
            old_hash = self._config.config_hash
            self._config = new
            self._remember(new)
            for listener in self.on_loaded:
                try:
                    await listener(new)
                except Exception as exc:
                    log.warning("config listener failed: %s", exc)
            log.info("config reloaded", extra={"old_hash": old_hash, "new_hash": new.config_hash})
            return True, new.config_hash
