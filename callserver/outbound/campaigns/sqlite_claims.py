"""SQLite: which row is due, claiming it for a dial, and the row updates before a dial
ends (give back, defer, skip, the call's id).

A claim is the only way a row becomes ``dialing``: it checks the campaign's state,
``max_concurrent`` and the pace in the same transaction that moves the row, so two
claims can never both succeed (see ``store``). Each function runs inside one transaction.
"""

from __future__ import annotations

import json
import sqlite3

from callserver.outbound.campaigns.sqlite_db import ROW_COLUMNS, row_from_db
from callserver.outbound.campaigns.store import Claim, RowState, next_pace_slot, pace_wait


def due(
    conn: sqlite3.Connection, campaign_id: str, now: float
) -> tuple[RowState | None, float | None]:
    """(the pending row due first, if due by ``now``; the earliest ``next_at`` pending)."""
    found = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM campaign_rows WHERE campaign = ? AND "
        "status = 'pending' ORDER BY next_at, row LIMIT 1",
        (campaign_id,),
    ).fetchone()
    if found is None:
        return None, None
    row = row_from_db(found)
    next_at = row.next_at or 0.0
    return (row if next_at <= now else None), next_at


def claim(conn: sqlite3.Connection, campaign_id: str, row: int, now: float, owner: str) -> Claim:
    """Move the row to ``dialing`` under ``owner`` if everything allows a dial now."""
    campaign = conn.execute(
        "SELECT state, in_flight, next_slot, last_dial, spec FROM campaigns WHERE id = ?",
        (campaign_id,),
    ).fetchone()
    if campaign is None or campaign[0] != "running":
        return Claim("stopped")
    _, in_flight, next_slot, last_dial, spec_json = campaign
    spec = json.loads(spec_json)
    if in_flight >= int(spec["max_concurrent"]):
        # Held back by max_concurrent, not late: the pace earns no catching up.
        conn.execute(
            "UPDATE campaigns SET next_slot = max(next_slot, ?) WHERE id = ?",
            (now, campaign_id),
        )
        return Claim("busy")
    found = conn.execute(
        "SELECT status, next_at, attempts FROM campaign_rows WHERE campaign = ? AND row = ?",
        (campaign_id, row),
    ).fetchone()
    if found is None or found[0] != "pending":
        return Claim("taken")
    if (found[1] or 0.0) > now:
        return Claim("not_due", wait_s=found[1] - now)
    interval = 60.0 / float(spec["calls_per_minute"])
    if (wait := pace_wait(next_slot, last_dial, now, interval)) > 0:
        return Claim("pace", wait_s=wait)
    slot = next_pace_slot(next_slot, now, interval)
    attempt = found[2] + 1
    conn.execute(
        "UPDATE campaigns SET in_flight = in_flight + 1, dials = dials + 1, "
        "next_slot = ?, last_dial = ?, updated_at = ? WHERE id = ?",
        (slot, now, now, campaign_id),
    )
    conn.execute(
        "UPDATE campaign_rows SET status = 'dialing', attempts = ?, owner = ?, "
        "call_id = NULL WHERE campaign = ? AND row = ?",
        (attempt, owner, campaign_id, row),
    )
    return Claim("ok", attempt=attempt)


def unclaim(conn: sqlite3.Connection, campaign_id: str, row: int, owner: str) -> None:
    """Give ``owner``'s claim back, as if never made (nothing was dialed)."""
    changed = conn.execute(
        "UPDATE campaign_rows SET status = 'pending', attempts = attempts - 1, "
        "owner = NULL WHERE campaign = ? AND row = ? AND status = 'dialing' AND "
        "owner = ?",
        (campaign_id, row, owner),
    ).rowcount
    if changed:
        conn.execute(
            "UPDATE campaigns SET in_flight = in_flight - 1, dials = dials - 1 WHERE id = ?",
            (campaign_id,),
        )


def defer(conn: sqlite3.Connection, campaign_id: str, row: int, next_at: float) -> None:
    """A pending row waits until ``next_at``."""
    conn.execute(
        "UPDATE campaign_rows SET next_at = ? WHERE campaign = ? AND row = ? AND "
        "status = 'pending'",
        (next_at, campaign_id, row),
    )


def skip(conn: sqlite3.Connection, campaign_id: str, row: int, why: str) -> None:
    """A pending row is never dialed; ``why`` is its outcome."""
    conn.execute(
        "UPDATE campaign_rows SET status = 'skipped', outcome = ?, next_at = NULL "
        "WHERE campaign = ? AND row = ? AND status = 'pending'",
        (why, campaign_id, row),
    )


def attach_call(
    conn: sqlite3.Connection, campaign_id: str, row: int, owner: str, call_id: str
) -> None:
    """The call id of ``owner``'s attempt in flight."""
    conn.execute(
        "UPDATE campaign_rows SET call_id = ? WHERE campaign = ? AND row = ? AND "
        "status = 'dialing' AND owner = ?",
        (call_id, campaign_id, row, owner),
    )


def rows(conn: sqlite3.Connection, campaign_id: str) -> list[RowState]:
    """Every row of the campaign, by row number."""
    return [
        row_from_db(r)
        for r in conn.execute(
            f"SELECT {ROW_COLUMNS} FROM campaign_rows WHERE campaign = ? ORDER BY row",
            (campaign_id,),
        )
    ]
