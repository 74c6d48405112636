"""The records both stores keep for a campaign and its rows, built one way (I/O-free).

A row imported from a campaign file starts the same in SQLite and Redis (pending and due
now, or skipped with why as its outcome), and both read their rows and campaigns back into
the same :class:`RowState` and :class:`CampaignInfo`: the stores differ only in how they
hold these values, never in what they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import CampaignInfo, RowState


def initial_row(spec: RowSpec, now: float) -> dict[str, Any]:
    """A row as a campaign is created with it: ``skipped`` (with why, e.g. ``dnc``, as its
    outcome: it counts in the report and is never dialed) or ``pending``, due at ``now``."""
    return {
        "row": spec.row,
        "to": spec.to,
        "variables": dict(spec.variables),
        "timezone": spec.timezone,
        "status": "skipped" if spec.skip else "pending",
        "attempts": 0,
        "next_at": None if spec.skip else now,
        "outcome": spec.skip,
        "calls": [],
    }


def row_state(data: Mapping[str, Any]) -> RowState:
    """A stored row (decoded JSON values) read back; tolerant of missing optional fields,
    which a row written before they existed (or by a Lua script) may lack."""
    calls = data.get("calls")
    variables = data.get("variables")
    return RowState(
        row=int(data["row"]),
        to=data["to"],
        variables=variables if isinstance(variables, dict) else {},
        timezone=data.get("timezone"),
        status=data["status"],
        attempts=int(data.get("attempts") or 0),
        next_at=data.get("next_at"),
        outcome=data.get("outcome"),
        detail=data.get("detail"),
        calls=calls if isinstance(calls, list) else [],
        owner=data.get("owner"),
        call_id=data.get("call_id"),
    )


def campaign_info(
    campaign_id: str,
    fields: Mapping[str, Any],
    counts: dict[str, int],
    outcomes: dict[str, int],
) -> CampaignInfo:
    """A campaign's report from its stored fields (``spec`` as JSON text; numbers as numbers
    or their text, as Redis returns them), its rows by status and by final outcome."""
    return CampaignInfo(
        id=campaign_id,
        spec=CampaignSpec.from_json(json.loads(fields["spec"])),
        state=fields["state"],
        reason=fields.get("reason"),
        created_at=float(fields["created_at"]),
        updated_at=float(fields["updated_at"]),
        total=int(fields["total"]),
        counts=counts,
        outcomes=outcomes,
        dials=int(fields.get("dials") or 0),
        in_flight=int(fields.get("in_flight") or 0),
    )
