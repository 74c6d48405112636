"""Campaign state in SQLite (the default without ``REDIS_URL``): one instance per file.

Every operation is one ``BEGIN IMMEDIATE`` transaction in a worker thread (the event loop
never waits on the disk), committed with ``synchronous=FULL`` (WAL): a claim is on disk
before the call it allows is dialed, so ``kill -9`` at any point leaves either an unclaimed
row (never dialed) or a ``dialing`` one, which the next start marks ``unknown`` and never
dials again. Two processes must not share one file (use Redis for several instances).

This module is the async face only: when each transaction runs. What they read and write
is in ``sqlite_campaigns`` (creation, state, reports), ``sqlite_claims`` (due rows,
claims and row updates) and ``sqlite_attempts`` (finish, recover), on ``sqlite_db``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from callserver.outbound.campaigns import sqlite_attempts, sqlite_campaigns, sqlite_claims
from callserver.outbound.campaigns.attempt import AttemptResult
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.sqlite_db import SqliteDb
from callserver.outbound.campaigns.store import CampaignInfo, Claim, RowState

__all__ = ["CHECKPOINT_EVERY", "SqliteCampaignStore"]

T = TypeVar("T")
CHECKPOINT_EVERY = 200
"""Transactions between two WAL checkpoints (each in a worker thread of its own)."""


class SqliteCampaignStore:
    """Implements :class:`~callserver.outbound.campaigns.store.CampaignStore` on SQLite."""

    def __init__(self, path: str | os.PathLike[str] | Path) -> None:
        self._db = SqliteDb(os.fspath(path))
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
        # Not through ``_run``: this is what makes the file.
        return await asyncio.to_thread(
            self._db.tx, lambda conn: sqlite_campaigns.create(conn, campaign_id, spec, rows, now)
        )

    async def get(self, campaign_id: str) -> CampaignInfo | None:
        return await self._run(lambda conn: sqlite_campaigns.read_info(conn, campaign_id))

    async def list(self) -> list[CampaignInfo]:
        return await self._run(sqlite_campaigns.list_infos, [])

    async def running(self) -> list[str]:
        return await self._run(sqlite_campaigns.running_ids, [])

    async def set_state(
        self, campaign_id: str, state: str, reason: str | None = None
    ) -> CampaignInfo | None:
        return await self._run(
            lambda conn: sqlite_campaigns.set_state(conn, campaign_id, state, reason)
        )

    async def complete_if_done(self, campaign_id: str) -> bool:
        return await self._run(
            lambda conn: sqlite_campaigns.complete_if_done(conn, campaign_id), False
        )

    # ---- rows --------------------------------------------------------------------------------

    async def due(self, campaign_id: str, now: float) -> tuple[RowState | None, float | None]:
        return await self._run(lambda conn: sqlite_claims.due(conn, campaign_id, now), (None, None))

    async def claim(self, campaign_id: str, row: int, now: float, owner: str) -> Claim:
        return await self._run(
            lambda conn: sqlite_claims.claim(conn, campaign_id, row, now, owner), Claim("stopped")
        )

    async def unclaim(self, campaign_id: str, row: int, owner: str) -> None:
        await self._run(lambda conn: sqlite_claims.unclaim(conn, campaign_id, row, owner))

    async def defer(self, campaign_id: str, row: int, next_at: float) -> None:
        await self._run(lambda conn: sqlite_claims.defer(conn, campaign_id, row, next_at))

    async def skip(self, campaign_id: str, row: int, why: str) -> None:
        await self._run(lambda conn: sqlite_claims.skip(conn, campaign_id, row, why))

    async def attach_call(self, campaign_id: str, row: int, owner: str, call_id: str) -> None:
        await self._run(
            lambda conn: sqlite_claims.attach_call(conn, campaign_id, row, owner, call_id)
        )

    async def finish(self, result: AttemptResult) -> None:
        await self._run(lambda conn: sqlite_attempts.finish(conn, result))

    async def rows(self, campaign_id: str) -> list[RowState]:
        return await self._run(lambda conn: sqlite_claims.rows(conn, campaign_id), [])

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        return None  # one process per file: nobody else to tell

    async def recover(self, owner: str, now: float) -> int:
        """Every ``dialing`` row not claimed by this process is a dead process's."""
        return await self._run(lambda conn: sqlite_attempts.recover(conn, owner, now), 0)
