"""Campaign state in SQLite (the default without ``REDIS_URL``): one instance per file.

Every operation is one ``BEGIN IMMEDIATE`` transaction in a worker thread (the event loop
never waits on the disk), committed with ``synchronous=FULL`` (WAL): a claim is on disk
before the call it allows is dialed, so ``kill -9`` at any point leaves either an unclaimed
row (never dialed) or a ``dialing`` one, which the next start marks ``unknown`` and never
dials again. Two processes must not share one file (use Redis for several instances).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from callserver.outbound.campaigns.attempt import INTERRUPTED, AttemptResult, call_entry
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import (
    TRANSITIONS,
    CampaignInfo,
    Claim,
    RowState,
    TransitionError,
    next_pace_slot,
    pace_wait,
)

T = TypeVar("T")
CHECKPOINT_EVERY = 200
"""Transactions between two WAL checkpoints (each in a worker thread of its own)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    total      INTEGER NOT NULL,
    in_flight  INTEGER NOT NULL DEFAULT 0,
    next_slot  REAL NOT NULL DEFAULT 0,
    last_dial  REAL NOT NULL DEFAULT 0,
    dials      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS campaign_rows (
    campaign  TEXT NOT NULL,
    row       INTEGER NOT NULL,
    to_number TEXT NOT NULL,
    variables TEXT NOT NULL,
    timezone  TEXT,
    status    TEXT NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,
    next_at   REAL,
    outcome   TEXT,
    detail    TEXT,
    calls     TEXT NOT NULL DEFAULT '[]',
    owner     TEXT,
    call_id   TEXT,
    PRIMARY KEY (campaign, row)
);
CREATE INDEX IF NOT EXISTS campaign_rows_due ON campaign_rows (campaign, status, next_at);
"""
_ROW_COLUMNS = (
    "row, to_number, variables, timezone, status, attempts, next_at, outcome, detail, calls, "
    "owner, call_id"
)


def _row(values: tuple[Any, ...]) -> RowState:
    (row, to, variables, zone, status, attempts, next_at, outcome, detail, calls, owner, call) = (
        values
    )
    return RowState(
        row=row,
        to=to,
        variables=json.loads(variables),
        timezone=zone,
        status=status,
        attempts=attempts,
        next_at=next_at,
        outcome=outcome,
        detail=detail,
        calls=json.loads(calls),
        owner=owner,
        call_id=call,
    )


class _Db:
    """The synchronous side: call only through :meth:`SqliteCampaignStore._run`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self._conn is not None or os.path.exists(self.path)

    def connect(self) -> sqlite3.Connection:
        if self._conn is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            # Checkpoints run apart (``checkpoint``), not inside a claim's commit: a commit
            # that also copies the WAL into the database stalls the dialing for a while.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def checkpoint(self) -> None:
        """Copy the WAL into the database on a connection of its own (``PASSIVE``: never
        waits for, nor blocks, the writer)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self.connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SqliteCampaignStore:
    """Implements :class:`~callserver.outbound.campaigns.store.CampaignStore` on SQLite."""

    def __init__(self, path: str | os.PathLike[str] | Path) -> None:
        self._db = _Db(os.fspath(path))
        self._writes = 0
        self._checkpoint: asyncio.Task[None] | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T], empty: Any = None) -> T:
        """``fn`` in one transaction, in a worker thread; ``empty`` while no campaign was
        ever created (the file is only made by the first one)."""
        if not self._db.exists():
            return empty
        result = await asyncio.to_thread(self._db.tx, fn)
        self._writes += 1
        if self._writes % CHECKPOINT_EVERY == 0 and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpoint = asyncio.create_task(asyncio.to_thread(self._db.checkpoint))
        return result

    async def open(self) -> None:
        return None  # opened by the first use; created by the first campaign

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        await asyncio.to_thread(self._db.close)

    # ---- campaigns ---------------------------------------------------------------------------

    async def create(
        self, campaign_id: str, spec: CampaignSpec, rows: list[RowSpec], now: float
    ) -> CampaignInfo:
        def write(conn: sqlite3.Connection) -> CampaignInfo:
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
                        r.row,
                        r.to,
                        json.dumps(dict(r.variables)),
                        r.timezone,
                        "skipped" if r.skip else "pending",
                        None if r.skip else now,
                        r.skip,
                    )
                    for r in rows
                ],
            )
            info = self._info(conn, campaign_id)
            assert info is not None
            return info

        return await asyncio.to_thread(self._db.tx, write)

    def _info(self, conn: sqlite3.Connection, campaign_id: str) -> CampaignInfo | None:
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
        return CampaignInfo(
            id=campaign_id,
            spec=CampaignSpec.from_json(json.loads(spec)),
            state=state,
            reason=reason,
            created_at=created,
            updated_at=updated,
            total=total,
            counts=counts,
            outcomes=outcomes,
            dials=dials,
            in_flight=in_flight,
        )

    async def get(self, campaign_id: str) -> CampaignInfo | None:
        return await self._run(lambda conn: self._info(conn, campaign_id))

    async def list(self) -> list[CampaignInfo]:
        def read(conn: sqlite3.Connection) -> list[CampaignInfo]:
            ids = [r[0] for r in conn.execute("SELECT id FROM campaigns ORDER BY created_at")]
            return [info for i in ids if (info := self._info(conn, i)) is not None]

        return await self._run(read, [])

    async def running(self) -> list[str]:
        return await self._run(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM campaigns WHERE state = 'running' ORDER BY created_at"
                )
            ],
            [],
        )

    async def set_state(
        self, campaign_id: str, state: str, reason: str | None = None
    ) -> CampaignInfo | None:
        def write(conn: sqlite3.Connection) -> CampaignInfo | None:
            found = conn.execute(
                "SELECT state FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
            if found is None:
                return None
            current = found[0]
            if state != current and state not in TRANSITIONS[current]:
                raise TransitionError(f"campaign is {current}: it cannot become {state}")
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
            return self._info(conn, campaign_id)

        return await self._run(write)

    async def complete_if_done(self, campaign_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
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

        return await self._run(write, False)

    # ---- rows --------------------------------------------------------------------------------

    async def due(self, campaign_id: str, now: float) -> tuple[RowState | None, float | None]:
        def read(conn: sqlite3.Connection) -> tuple[RowState | None, float | None]:
            found = conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM campaign_rows WHERE campaign = ? AND "
                "status = 'pending' ORDER BY next_at, row LIMIT 1",
                (campaign_id,),
            ).fetchone()
            if found is None:
                return None, None
            row = _row(found)
            next_at = row.next_at or 0.0
            return (row if next_at <= now else None), next_at

        return await self._run(read, (None, None))

    async def claim(self, campaign_id: str, row: int, now: float, owner: str) -> Claim:
        def write(conn: sqlite3.Connection) -> Claim:
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
                "SELECT status, next_at, attempts FROM campaign_rows WHERE campaign = ? AND "
                "row = ?",
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

        return await self._run(write, Claim("stopped"))

    async def unclaim(self, campaign_id: str, row: int, owner: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE campaign_rows SET status = 'pending', attempts = attempts - 1, "
                "owner = NULL WHERE campaign = ? AND row = ? AND status = 'dialing' AND "
                "owner = ?",
                (campaign_id, row, owner),
            ).rowcount
            if changed:
                conn.execute(
                    "UPDATE campaigns SET in_flight = in_flight - 1, dials = dials - 1 "
                    "WHERE id = ?",
                    (campaign_id,),
                )

        await self._run(write)

    async def defer(self, campaign_id: str, row: int, next_at: float) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE campaign_rows SET next_at = ? WHERE campaign = ? AND row = ? AND "
                "status = 'pending'",
                (next_at, campaign_id, row),
            )
        )

    async def skip(self, campaign_id: str, row: int, why: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE campaign_rows SET status = 'skipped', outcome = ?, next_at = NULL "
                "WHERE campaign = ? AND row = ? AND status = 'pending'",
                (why, campaign_id, row),
            )
        )

    async def attach_call(self, campaign_id: str, row: int, owner: str, call_id: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE campaign_rows SET call_id = ? WHERE campaign = ? AND row = ? AND "
                "status = 'dialing' AND owner = ?",
                (call_id, campaign_id, row, owner),
            )
        )

    async def finish(self, result: AttemptResult) -> None:
        def write(conn: sqlite3.Connection) -> None:
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

        await self._run(write)

    async def rows(self, campaign_id: str) -> list[RowState]:
        return await self._run(
            lambda conn: [
                _row(r)
                for r in conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM campaign_rows WHERE campaign = ? ORDER BY row",
                    (campaign_id,),
                )
            ],
            [],
        )

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        return None  # one process per file: nobody else to tell

    async def recover(self, owner: str, now: float) -> int:
        """Every ``dialing`` row not claimed by this process is a dead process's."""

        def write(conn: sqlite3.Connection) -> int:
            orphans = conn.execute(
                "SELECT campaign, row, attempts, calls, call_id FROM campaign_rows WHERE "
                "status = 'dialing' AND (owner IS NULL OR owner != ?)",
                (owner,),
            ).fetchall()
            for campaign, row, attempt, calls_json, call_id in orphans:
                calls = json.loads(calls_json)
                calls.append(call_entry(attempt, call_id, "unknown", now, INTERRUPTED))
                conn.execute(
                    "UPDATE campaign_rows SET status = 'done', outcome = 'unknown', detail = ?, "
                    "calls = ?, owner = NULL, call_id = NULL WHERE campaign = ? AND row = ?",
                    (INTERRUPTED, json.dumps(calls), campaign, row),
                )
                conn.execute(
                    "UPDATE campaigns SET in_flight = max(in_flight - 1, 0) WHERE id = ?",
                    (campaign,),
                )
            return len(orphans)

        return await self._run(write, 0)
