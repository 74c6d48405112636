"""SQLite: the end of an attempt (``finish``) and of attempts whose runner died
(``recover``), which both append to the row's call history and free its in-flight place.

What ends an attempt and how it reads (retried or done, the history entry) is decided by
:mod:`.attempt`, shared with Redis; these functions only write it, inside a transaction.
"""

from __future__ import annotations

import json
import sqlite3

from callserver.outbound.campaigns.attempt import AttemptResult, interrupted


def finish(conn: sqlite3.Connection, result: AttemptResult) -> None:
    """Write the attempt's end, if the row is still this owner's attempt in flight."""
    found = conn.execute(
        "SELECT calls FROM campaign_rows WHERE campaign = ? AND row = ? AND "
        "status = 'dialing' AND owner = ? AND attempts = ?",
        (result.campaign_id, result.row, result.owner, result.attempt),
    ).fetchone()
    if found is None:
        return  # recovered meanwhile (we were thought dead): its outcome stands
    state = conn.execute(
        "SELECT state FROM campaigns WHERE id = ?", (result.campaign_id,)
    ).fetchone()[0]
    calls = json.loads(found[0])
    calls.append(result.entry())
    again = result.retried(state)
    conn.execute(
        "UPDATE campaign_rows SET status = ?, outcome = ?, detail = ?, next_at = ?, "
        "calls = ?, owner = NULL, call_id = NULL WHERE campaign = ? AND row = ?",
        (
            "pending" if again else "done",
            result.outcome,
            result.detail,
            result.retry_at if again else None,
            json.dumps(calls),
            result.campaign_id,
            result.row,
        ),
    )
    conn.execute(
        "UPDATE campaigns SET in_flight = in_flight - 1, updated_at = ? WHERE id = ?",
        (result.now, result.campaign_id),
    )


def recover(conn: sqlite3.Connection, owner: str, now: float) -> int:
    """Every ``dialing`` row not claimed by ``owner`` (this process) is a dead process's:
    ``unknown``, final. How many."""
    orphans = conn.execute(
        "SELECT campaign, row, owner, attempts, calls, call_id FROM campaign_rows WHERE "
        "status = 'dialing' AND (owner IS NULL OR owner != ?)",
        (owner,),
    ).fetchall()
    for campaign, row, other, attempt, calls_json, call_id in orphans:
        ended = interrupted(campaign, row, other or "", attempt, call_id, now)
        calls = json.loads(calls_json)
        calls.append(ended.entry())
        conn.execute(
            "UPDATE campaign_rows SET status = 'done', outcome = ?, detail = ?, "
            "calls = ?, owner = NULL, call_id = NULL WHERE campaign = ? AND row = ?",
            (ended.outcome, ended.detail, json.dumps(calls), campaign, row),
        )
        conn.execute(
            "UPDATE campaigns SET in_flight = max(in_flight - 1, 0) WHERE id = ?",
            (campaign,),
        )
    return len(orphans)
