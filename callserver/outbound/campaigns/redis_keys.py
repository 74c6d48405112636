"""Where a campaign lives in Redis: every key name the store and its scripts use.

Layout under the key prefix ``P``:

- ``P camps``: ZSET campaign id -> created_at
- ``P camp:<id>``: HASH spec, state, reason, created_at, updated_at, total, in_flight,
  next_slot (ms, Redis time), dials, max_concurrent, interval_ms
- ``P camp:<id>:rows``: HASH row number -> row JSON
- ``P camp:<id>:pending``: ZSET row number -> next_at (ms)
- ``P camp:<id>:dialing``: HASH row number -> owner
- ``P camp:<id>:counts``: HASH rows by status, and ``o:<outcome>`` by final outcome
- ``P campowner:<owner>``: a runner's heartbeat (expires when it stops refreshing it)

Named in one place so that a script's ``KEYS`` order cannot differ between callers.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class CampaignKeys:
    """The key names under one prefix (several deployments may share one Redis)."""

    prefix: str

    @property
    def campaigns(self) -> str:
        """The ZSET of every campaign id, by creation time."""
        return f"{self.prefix}camps"

    def campaign(self, campaign_id: str, part: str = "") -> str:
        """The campaign's hash (``part`` empty) or one of its keys (``":rows"``, ...)."""
        return f"{self.prefix}camp:{campaign_id}{part}"

    def rows(self, campaign_id: str) -> list[str]:
        """camp, rows, pending, dialing, counts: the keys every row script takes."""
        return [
            self.campaign(campaign_id),
            self.campaign(campaign_id, ":rows"),
            self.campaign(campaign_id, ":pending"),
            self.campaign(campaign_id, ":dialing"),
            self.campaign(campaign_id, ":counts"),
        ]

    def owner(self, owner: str) -> str:
        """A runner's heartbeat key."""
        return f"{self.prefix}campowner:{owner}"
