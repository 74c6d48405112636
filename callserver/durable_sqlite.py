"""How callserver opens the SQLite files that must not lose a write (outbox, campaigns)."""

from __future__ import annotations

import os
import sqlite3


def open_durable(path: str, schema: str, *pragmas: str) -> sqlite3.Connection:
    """A connection in autocommit mode, usable from worker threads, with the schema applied.

    WAL lets readers run beside the writer; ``synchronous=FULL`` makes a commit durable
    (power loss included) before it returns; a busy database is waited for (5 s), never an
    error. ``pragmas`` are the caller's further ``PRAGMA`` statements (without the keyword).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000", *pragmas):
        conn.execute(f"PRAGMA {pragma}")
    conn.executescript(schema)
    return conn
