"""The SQLite file behind :class:`~.sqlite_store.SqliteCampaignStore`: schema, connection,
transactions and WAL checkpoints (synchronous: called from worker threads only).

Kept apart from the campaign operations so that what durability rests on (``BEGIN
IMMEDIATE``, ``synchronous=FULL``, checkpoints outside a claim's commit) is in one place
and every operation module just receives a connection inside its transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from callserver.durable_sqlite import open_durable
from callserver.outbound.campaigns.records import row_state
from callserver.outbound.campaigns.store import RowState

T = TypeVar("T")

SCHEMA = """
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
ROW_COLUMNS = (
    "row, to_number, variables, timezone, status, attempts, next_at, outcome, detail, calls, "
    "owner, call_id"
)
"""What ``SELECT`` reads for :func:`row_from_db`, in its order."""
_ROW_FIELDS = (
    "row",
    "to",
    "variables",
    "timezone",
    "status",
    "attempts",
    "next_at",
    "outcome",
    "detail",
    "calls",
    "owner",
    "call_id",
)


def row_from_db(values: tuple[Any, ...]) -> RowState:
    """A ``campaign_rows`` row (selected as :data:`ROW_COLUMNS`) as a :class:`RowState`;
    its JSON columns decoded, then read like every store's rows."""
    data = dict(zip(_ROW_FIELDS, values, strict=True))
    data["variables"] = json.loads(data["variables"])
    data["calls"] = json.loads(data["calls"])
    return row_state(data)


class SqliteDb:
    """The synchronous side: call only through :meth:`SqliteCampaignStore._run`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self._conn is not None or os.path.exists(self.path)

    def connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # Checkpoints run apart (``checkpoint``), not inside a claim's commit: a commit
            # that also copies the WAL into the database stalls the dialing for a while.
            self._conn = open_durable(self.path, SCHEMA, "wal_autocheckpoint=0")
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
        """``fn`` in one ``BEGIN IMMEDIATE`` transaction: committed (durably) when it
        returns, rolled back when it raises."""
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
