"""Campaigns as the admin API and the CLI see them: create, follow, pause, resume, cancel,
and the per-row results (JSON Lines or CSV)."""

from __future__ import annotations

import csv
import io
import json
import logging
import secrets
import time
from typing import Any

from callserver.outbound.campaigns.runner import CampaignRunner
from callserver.outbound.campaigns.spec import CampaignError, parse_campaign
from callserver.outbound.campaigns.store import CampaignInfo, CampaignStore, RowState
from callserver.outbound.request import CallRequest, RequestError
from callserver.outbound.service import OutboundService

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "row", "to", "status", "outcome", "attempts", "call_id", "detail", "timezone", "variables",
)  # fmt: skip
ACTIONS = {"pause": "paused", "resume": "running", "cancel": "cancelled"}


def new_campaign_id() -> str:
    return f"cmp_{secrets.token_hex(8)}"


class Campaigns:
    """The campaigns of this deployment (shared through the store with every instance)."""

    def __init__(self, store: CampaignStore, runner: CampaignRunner, outbound: OutboundService):
        self.store = store
        self.runner = runner
        self._outbound = outbound

    async def create(self, body: Any) -> CampaignInfo:
        """Validate all of it, store it, start dialing; CampaignError lists every problem."""
        spec, rows = parse_campaign(body, self._outbound.graphs, self._outbound.dnc)
        first = next((r for r in rows if not r.skip), rows[0])
        try:  # what would refuse every row (no dialer, no caller number) refuses the campaign
            self._outbound.check(
                CallRequest(first.to, spec.graph, first.variables, spec.from_, spec.dialer)
            )
        except RequestError as exc:
            raise CampaignError(
                [{"row": None, "column": exc.field, "message": exc.message}]
            ) from None
        campaign_id = new_campaign_id()
        info = await self.store.create(campaign_id, spec, rows, time.time())
        skipped = sum(1 for r in rows if r.skip)
        log.info(
            "campaign created: %d rows (%d skipped), %.4g calls/min, at most %d at once",
            len(rows),
            skipped,
            spec.calls_per_minute,
            spec.max_concurrent,
            extra={"campaign_id": campaign_id, "graph": spec.graph},
        )
        self.runner.wake()
        return info

    async def get(self, campaign_id: str) -> CampaignInfo | None:
        return await self.store.get(campaign_id)

    async def list(self) -> list[CampaignInfo]:
        return await self.store.list()

    async def act(self, campaign_id: str, action: str) -> CampaignInfo | None:
        """``pause``, ``resume`` or ``cancel``; raises TransitionError."""
        info = await self.store.set_state(campaign_id, ACTIONS[action], f"{action} requested")
        if info is not None:
            log.info("campaign %s", info.state, extra={"campaign_id": campaign_id})
            self.runner.wake()
        return info

    async def rows(self, campaign_id: str) -> list[RowState]:
        return await self.store.rows(campaign_id)


def export_rows(rows: list[RowState], fmt: str) -> str:
    """Per-row results as JSON Lines (every attempt included) or CSV (one line per row)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r.as_json()) + "\n" for r in rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        data = r.as_json()
        data["variables"] = json.dumps(r.variables, sort_keys=True)
        writer.writerow(["" if data.get(c) is None else data[c] for c in EXPORT_COLUMNS])
    return out.getvalue()
