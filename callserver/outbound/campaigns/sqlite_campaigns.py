"""SQLite: creating campaigns (their rows imported), their state, and their reports.

Each function runs inside one transaction (``SqliteDb.tx``) on the connection it is given:
the async store decides when; these decide what is read and written.
"""

from __future__ import annotations

import json
import sqlite3
import time

from callserver.outbound.campaigns.records import campaign_info, initial_row
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import CampaignInfo
from callserver.outbound.campaigns.transitions import check_transition


def create(
    conn: sqlite3.Connection, campaign_id: str, spec: CampaignSpec, rows: list[RowSpec], now: float
) -> CampaignInfo:
    """The campaign, running, and every row as it starts (:func:`records.initial_row`)."""
    conn.execute(
        "INSERT INTO campaigns (id, spec, state, created_at, updated_at, total) "
        "VALUES (?, ?, 'running', ?, ?, ?)",
        (campaign_id, json.dumps(spec.as_json()), now, now, len(rows)),
    )
    conn.executemany(
        "INSERT INTO campaign_rows (campaign, row, to_number, variables, timezone, "
        "status, next_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                campaign_id,
                r["row"],
                r["to"],
                json.dumps(r["variables"]),
                r["timezone"],
                r["status"],
                r["next_at"],
                r["outcome"],
            )
            for r in (initial_row(spec_row, now) for spec_row in rows)
        ],
    )
    info = read_info(conn, campaign_id)
    assert info is not None
    return info


def read_info(conn: sqlite3.Connection, campaign_id: str) -> CampaignInfo | None:
    """The campaign's report (None: no such campaign); counts come from the rows
    themselves, so they cannot disagree with them."""
    found = conn.execute(
        "SELECT spec, state, reason, created_at, updated_at, total, in_flight, dials "
        "FROM campaigns WHERE id = ?",
        (campaign_id,),
    ).fetchone()
    if found is None:
        return None
    spec, state, reason, created, updated, total, in_flight, dials = found
    counts = dict(
        conn.execute(
            "SELECT status, count(*) FROM campaign_rows WHERE campaign = ? GROUP BY status",
            (campaign_id,),
        ).fetchall()
    )
    outcomes = dict(
        conn.execute(
            "SELECT outcome, count(*) FROM campaign_rows WHERE campaign = ? AND status IN "
            "('done', 'skipped') AND outcome IS NOT NULL GROUP BY outcome",
            (campaign_id,),
        ).fetchall()
    )
    fields = {
        "spec": spec,
        "state": state,
        "reason": reason,
        "created_at": created,
        "updated_at": updated,
        "total": total,
        "in_flight": in_flight,
        "dials": dials,
    }
    return campaign_info(campaign_id, fields, counts, outcomes)


def list_infos(conn: sqlite3.Connection) -> list[CampaignInfo]:
    """Every campaign's report, oldest first."""
    ids = [r[0] for r in conn.execute("SELECT id FROM campaigns ORDER BY created_at")]
    return [info for i in ids if (info := read_info(conn, i)) is not None]


def running_ids(conn: sqlite3.Connection) -> list[str]:
    """Ids of the running campaigns, oldest first."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM campaigns WHERE state = 'running' ORDER BY created_at"
        )
    ]


def set_state(
    conn: sqlite3.Connection, campaign_id: str, state: str, reason: str | None
) -> CampaignInfo | None:
    """Move the campaign to ``state`` (cancelling cancels its pending rows too); raises
    ``TransitionError``; None for an unknown campaign."""
    found = conn.execute("SELECT state FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
    if found is None:
        return None
    check_transition(found[0], state)
    conn.execute(
        "UPDATE campaigns SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
        (state, reason, time.time(), campaign_id),
    )
    if state == "cancelled":
        conn.execute(
            "UPDATE campaign_rows SET status = 'cancelled', next_at = NULL "
            "WHERE campaign = ? AND status = 'pending'",
            (campaign_id,),
        )
    return read_info(conn, campaign_id)


def complete_if_done(conn: sqlite3.Connection, campaign_id: str) -> bool:
    """Mark a running campaign completed if no row is pending or in flight."""
    open_rows = conn.execute(
        "SELECT count(*) FROM campaign_rows WHERE campaign = ? AND status IN "
        "('pending', 'dialing')",
        (campaign_id,),
    ).fetchone()[0]
    if open_rows:
        return False
    changed = conn.execute(
        "UPDATE campaigns SET state = 'completed', updated_at = ? "
        "WHERE id = ? AND state = 'running'",
        (time.time(), campaign_id),
    ).rowcount
    return bool(changed)
