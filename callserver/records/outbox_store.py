"""The SQLite side of the outbox: one file, one connection, synchronous on purpose.

Only :class:`~callserver.records.outbox.Outbox` calls it, always through
``asyncio.to_thread``. Other tables may live in the same file (the analysis queue) and
change in the same transaction as outbox rows, through :meth:`OutboxStore.transaction`.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from callserver.durable_sqlite import open_durable

T = TypeVar("T")

PENDING = "pending"
DEAD = "dead"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    last_error      TEXT,
    UNIQUE (webhook_id, endpoint)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    webhook_id: str
    endpoint: str
    event_type: str
    body: str
    created_at: float
    attempts: int


class OutboxStore:
    """The SQLite side, synchronous on purpose: call it only through ``asyncio.to_thread``.

    One connection shared by the executor threads, serialised by a lock (SQLite allows one
    writer anyway). Opened lazily, so constructing an :class:`Outbox` touches no disk.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # A commit is on disk when enqueue returns, even across power loss.
            self._conn = open_durable(self.path, _SCHEMA)
        return self._conn

    def open(self) -> None:
        with self._lock:
            self._connect()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction, under the lock.

        Other tables kept in this file (the analysis queue) change through here, so that
        their rows and outbox rows are committed together or not at all.
        """
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def insert(
        self,
        webhook_id: str,
        event_type: str,
        body: str,
        endpoints: Iterable[str],
        now: float,
        also: Callable[[sqlite3.Connection], object] | None = None,
    ) -> int:
        """Store one row per endpoint in one transaction; returns rows added (an id already
        present for an endpoint is left alone, which makes re-enqueueing idempotent).
        ``also`` runs in the same transaction."""
        rows = [(webhook_id, ep, event_type, body, now, now) for ep in endpoints]

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO outbox"
                " (webhook_id, endpoint, event_type, body, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
            if also is not None:
                also(conn)
            return added

        return self.transaction(write)

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        with self._lock:
            cur = self._connect().execute(
                "SELECT id, webhook_id, endpoint, event_type, body, created_at, attempts"
                " FROM outbox WHERE status = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT ?",
                (PENDING, now, limit),
            )
            return [OutboxRow(*row) for row in cur.fetchall()]

    def next_due_at(self) -> float | None:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT MIN(next_attempt_at) FROM outbox WHERE status = ?", (PENDING,))
                .fetchone()
            )
        return None if row is None else row[0]

    def delivered(self, row_id: int) -> None:
        with self._lock:
            self._connect().execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def reschedule(self, row_id: int, attempts: int, next_attempt_at: float, error: str) -> None:
        with self._lock:
            self._connect().execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (attempts, next_attempt_at, error, row_id),
            )

    def bury(self, row_id: int, attempts: int, error: str) -> None:
        with self._lock:
            self._connect().execute(
                "UPDATE outbox SET status = ?, attempts = ?, last_error = ? WHERE id = ?",
                (DEAD, attempts, error, row_id),
            )

    def count(self, status: str) -> int:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT COUNT(*) FROM outbox WHERE status = ?", (status,))
                .fetchone()
            )
        return int(row[0])
