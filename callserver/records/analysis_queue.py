"""Durable post-call analyses: a job table beside the outbox, and the worker that runs them.

Why durable: a call's analysis happens after the call, while the process may be restarted
or killed; the result must still reach the receiver. So when a call ends, its ``call.ended``
event and its analysis job are committed in one SQLite transaction (the outbox's file), and
when the analysis is done its ``call.analyzed`` event is committed in the same transaction
that deletes the job. Whatever instant the process dies at, after a restart either the job is
still there (and runs again; the event's webhook id is derived from the call, so a receiver
never sees two) or its event is in the outbox (and is delivered, signed, at least once).

A job that keeps being interrupted (the process dies during its request ``max_runs`` times)
is reported as failed (``interrupted``) instead of being retried forever. Only graphs with an
``analysis:`` block create jobs: without one nothing is ever sent to the Responses API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from callserver.calls.records import CallRecord
from callserver.metrics import Metrics
from callserver.records.analysis import AnalysisJob, analyzed_event, output_schema_of, parse_answer
from callserver.records.outbox import Outbox
from callserver.records.responses_client import AnalysisFailure, ResponsesAnswer, ResponsesClient

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analysis_jobs (
    webhook_id TEXT    PRIMARY KEY,
    call_id    TEXT    NOT NULL,
    request    TEXT    NOT NULL,
    context    TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    runs       INTEGER NOT NULL DEFAULT 0
)
"""
_COLUMNS = "webhook_id, call_id, request, context, created_at, runs"


@dataclasses.dataclass(frozen=True, slots=True)
class PostCallEvents:
    """What one ended call leaves: its ``call.ended`` event, and maybe an analysis job."""

    event: dict[str, Any]
    webhook_id: str
    job: AnalysisJob | None = None


Prepare = Callable[[], PostCallEvents]
"""Builds the events (redaction, the request body): CPU work, run in a worker thread."""


def _create_table(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


def _insert(job: AnalysisJob) -> Callable[[sqlite3.Connection], None]:
    row = (
        job.webhook_id,
        job.call_id,
        json.dumps(job.request, ensure_ascii=False, separators=(",", ":")),
        json.dumps(job.context, separators=(",", ":")),
        job.created_at,
    )

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO analysis_jobs"
            " (webhook_id, call_id, request, context, created_at) VALUES (?, ?, ?, ?, ?)",
            row,
        )

    return insert


def _delete(webhook_id: str) -> Callable[[sqlite3.Connection], None]:
    def delete(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM analysis_jobs WHERE webhook_id = ?", (webhook_id,))

    return delete


def _start_run(webhook_id: str) -> Callable[[sqlite3.Connection], int]:
    """Count a start before any request leaves, so a process dying mid-request is counted."""

    def start(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE analysis_jobs SET runs = runs + 1 WHERE webhook_id = ?", (webhook_id,))
        row = conn.execute(
            "SELECT runs FROM analysis_jobs WHERE webhook_id = ?", (webhook_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    return start


def _due(limit: int, busy: frozenset[str]) -> Callable[[sqlite3.Connection], list[AnalysisJob]]:
    def due(conn: sqlite3.Connection) -> list[AnalysisJob]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM analysis_jobs ORDER BY created_at LIMIT ?",
            (limit + len(busy),),
        ).fetchall()
        jobs = [
            AnalysisJob(wid, cid, json.loads(req), json.loads(ctx), created, runs)
            for wid, cid, req, ctx, created, runs in rows
            if wid not in busy
        ]
        return jobs[:limit]

    return due


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM analysis_jobs").fetchone()[0])


class AnalysisQueue:
    """Stores each ended call's events (and analysis job) and runs the jobs.

    ``submit`` is what the end listener calls (synchronous, returns at once); ``start``
    creates the table and launches the worker, which also resumes jobs a previous process
    left; ``aclose`` lets running analyses finish for ``close_grace_s``, then cancels them
    (they stay stored and run again on the next start).
    """

    def __init__(
        self,
        outbox: Outbox,
        client: ResponsesClient,
        *,
        metrics: Metrics | None = None,
        concurrency: int = 4,
        max_runs: int = 3,
        idle_poll_s: float = 30.0,
        close_grace_s: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._metrics = metrics
        self._concurrency = concurrency
        self._max_runs = max_runs
        self._idle_poll_s = idle_poll_s
        self._close_grace_s = close_grace_s
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._submits: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, CallRecord] = {}
        self._closed = False

    # ---- producing --------------------------------------------------------------------------

    def submit(self, prepare: Prepare, *, record: CallRecord | None = None) -> None:
        """Store what ``prepare`` builds, in a task this queue owns (awaited by ``aclose``)."""
        task = asyncio.get_running_loop().create_task(self._store(prepare, record))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def _store(self, prepare: Prepare, record: CallRecord | None) -> None:
        call_id = record.call_id if record is not None else None
        try:
            events = await asyncio.to_thread(prepare)
            also = _insert(events.job) if events.job is not None else None
            if events.job is not None and record is not None:
                self._records[events.job.webhook_id] = record  # before the worker can see it
            await self._outbox.enqueue(events.event, webhook_id=events.webhook_id, also=also)
            if events.job is not None and record is not None and record.analysis is None:
                record.analysis = {"status": "pending", "webhook_id": events.job.webhook_id}
        except Exception:
            log.exception(
                "post-call event could not be stored; it is lost", extra={"call_id": call_id}
            )
            return
        if also is not None:
            self._wake.set()

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._worker is not None and not self._worker.done():
            return
        await self._outbox.in_transaction(_create_table)
        self._worker = asyncio.create_task(self._run(), name="analysis-worker")

    async def aclose(self, *, submit_timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._submits:
            await asyncio.wait(set(self._submits), timeout=submit_timeout_s)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        running = set(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self._close_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._client.aclose()

    async def pending_count(self) -> int:
        return await self._outbox.in_transaction(_count)

    # ---- running ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before reading, so a job stored during the read is seen
            try:
                free = self._concurrency - len(self._running)
                if free > 0:
                    busy = frozenset(self._running)
                    for job in await self._outbox.in_transaction(_due(free, busy)):
                        self._launch(job)
            except Exception:
                log.exception("analysis worker error; retrying")
                await asyncio.sleep(min(self._idle_poll_s, 5.0))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_poll_s):
                    await self._wake.wait()

    def _launch(self, job: AnalysisJob) -> None:
        task = asyncio.create_task(self._process(job), name=f"analysis:{job.call_id}")
        self._running[job.webhook_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(job.webhook_id, None)
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _process(self, job: AnalysisJob) -> None:
        try:
            await self._complete(job)
        except Exception:
            # The database failed: the job is still stored. Hold the slot a while so the
            # worker does not pick it up again at once.
            log.exception(
                "analysis could not be stored; retrying later", extra={"call_id": job.call_id}
            )
            await asyncio.sleep(min(self._idle_poll_s, 5.0))

    async def _complete(self, job: AnalysisJob) -> None:
        runs = await self._outbox.in_transaction(_start_run(job.webhook_id))
        if runs == 0:
            return  # finished by someone else meanwhile
        started = time.monotonic()
        result: dict[str, Any] | None = None
        answer: ResponsesAnswer | None = None
        failure: AnalysisFailure | None = None
        try:
            if runs > self._max_runs:
                raise AnalysisFailure(
                    "interrupted",
                    f"started {runs - 1} times without finishing (the process stopped); given up",
                )
            answer = await self._client.create(
                job.request,
                timeout_s=float(job.context.get("timeout_s", 30.0)),
                max_attempts=int(job.context.get("max_attempts", 3)),
            )
            result = await asyncio.to_thread(
                parse_answer, answer.text, output_schema_of(job.request)
            )
        except AnalysisFailure as exc:
            failure = exc
        except Exception as exc:  # a bug or an answer of a shape nobody expected
            log.exception("analysis failed unexpectedly", extra={"call_id": job.call_id})
            failure = AnalysisFailure("bad_response", f"unexpected {type(exc).__name__}")
        duration = time.monotonic() - started
        event = analyzed_event(
            job, result=result, failure=failure, answer=answer, duration_s=duration
        )
        await self._outbox.enqueue(event, webhook_id=job.webhook_id, also=_delete(job.webhook_id))
        outcome = "completed" if failure is None else failure.code
        if self._metrics is not None:
            self._metrics.analysis_finished(outcome, duration)
        record = self._records.pop(job.webhook_id, None)
        if record is not None:
            data = event["data"]
            record.analysis = {
                "status": data["status"],
                "webhook_id": job.webhook_id,
                **{k: data[k] for k in ("model", "result", "error", "attempts")},
            }
        log.info(
            "call analysed: %s",
            outcome,
            extra={
                "call_id": job.call_id,
                "attempts": event["data"]["attempts"],
                "duration_s": round(duration, 3),
            },
        )
