"""The current agent-graph config, swappable at run time (SIGHUP, admin reload).

Calls read ``current`` once when they start and keep what they got, so a reload applies to
new calls only and never changes a call in progress.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from callserver.graph import Config, ConfigError, load_config

log = logging.getLogger(__name__)


class ConfigHolder:
    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self._config = config
        self._lock = asyncio.Lock()

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
            log.info("config reloaded", extra={"old_hash": old_hash, "new_hash": new.config_hash})
            return True, new.config_hash
