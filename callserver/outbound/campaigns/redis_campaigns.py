"""Redis: writing a new campaign (its rows imported) and reading campaigns and rows back.

Creation is one ``MULTI`` pipeline (a campaign appears whole or not at all), rows in chunks
so that one huge file does not make one huge command. Reading turns the hashes' text back
into the shared records (:mod:`.records`), the same values SQLite returns.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from callserver.outbound.campaigns.records import campaign_info, initial_row, row_state
from callserver.outbound.campaigns.redis_keys import CampaignKeys
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import CampaignInfo, RowState

CREATE_CHUNK = 1000


async def write_campaign(
    client: Redis,
    keys: CampaignKeys,
    campaign_id: str,
    spec: CampaignSpec,
    rows: list[RowSpec],
    now: float,
) -> None:
    """The campaign, running, with every row as it starts, in one transaction."""
    camp = keys.rows(campaign_id)
    pending = [r for r in rows if not r.skip]
    skipped = [r for r in rows if r.skip]
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            camp[0],
            mapping={
                "spec": json.dumps(spec.as_json()),
                "state": "running",
                "reason": "",
                "created_at": now,
                "updated_at": now,
                "total": len(rows),
                "in_flight": 0,
                "next_slot": 0,
                "last_dial": 0,
                "dials": 0,
                "max_concurrent": spec.max_concurrent,
                "interval_ms": max(int(spec.interval_s * 1000), 1),
            },
        )
        for start in range(0, len(rows), CREATE_CHUNK):
            chunk = rows[start : start + CREATE_CHUNK]
            pipe.hset(camp[1], mapping={str(r.row): json.dumps(initial_row(r, now)) for r in chunk})
        for start in range(0, len(pending), CREATE_CHUNK):
            chunk = pending[start : start + CREATE_CHUNK]
            pipe.zadd(camp[2], {str(r.row): now * 1000 for r in chunk})
        counts: dict[str, int] = {"pending": len(pending), "skipped": len(skipped)}
        for r in skipped:
            counts[f"o:{r.skip}"] = counts.get(f"o:{r.skip}", 0) + 1
        pipe.hset(camp[4], mapping=counts)  # type: ignore[arg-type]
        pipe.zadd(keys.campaigns, {campaign_id: now})
        await pipe.execute()


def decode_info(campaign_id: str, fields: dict[str, Any], counts: dict[str, str]) -> CampaignInfo:
    """A campaign's report from its hash and its counts hash (``o:`` keys: outcomes);
    zero counts left out, as SQLite's ``GROUP BY`` leaves them out."""
    statuses = {k: int(v) for k, v in counts.items() if not k.startswith("o:") and int(v)}
    outcomes = {k[2:]: int(v) for k, v in counts.items() if k.startswith("o:") and int(v)}
    # No reason is stored as "" (a hash holds no None).
    return campaign_info(
        campaign_id, {**fields, "reason": fields.get("reason") or None}, statuses, outcomes
    )


def decode_row(raw: str) -> RowState:
    """A row's JSON, as the Lua scripts and :func:`write_campaign` store it."""
    return row_state(json.loads(raw))
