"""A durable outbox for outgoing webhooks (post-call events), in SQLite on local disk.

Why an outbox: a customer's receiver may be down for minutes or hours and callserver may be
restarted or ``kill -9``-ed in between, yet every event must arrive at least once. So an event
is committed to SQLite (WAL, ``synchronous=FULL``) *before* ``enqueue`` returns, one row per
(event, endpoint), and a single worker task delivers due rows, storing ``attempts`` and
``next_attempt_at`` after every failure so the retry schedule survives restarts too.

Delivery follows Standard Webhooks: the same ``webhook-id`` on every attempt (receivers
deduplicate on it), a fresh ``webhook-timestamp`` and signature per attempt (receivers reject
stale timestamps), signed with our own ``whsec_`` secret. Rows are retried with exponential
backoff and jitter (capped) until ``max_age_s``, then kept as ``dead`` and logged.

Every SQLite call runs in a worker thread (``asyncio.to_thread``) so the event loop, which is
carrying live audio for other calls, never waits on an fsync. One process per outbox file:
two processes delivering from the same file would both send each row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpx
import tenacity
from standardwebhooks.webhooks import Webhook  # svix's core, without its API client

from callserver.records.outbox_store import DEAD, PENDING, OutboxRow, OutboxStore
from callserver.tls import client_tls

log = logging.getLogger(__name__)

DEFAULT_PATH = "./callserver-outbox.sqlite3"
T = TypeVar("T")
ResultHook = Callable[[str], None]
"""Called with ``delivered``, ``retry`` or ``dead`` after each attempt (metrics)."""


def new_webhook_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def safe_url(url: str) -> str:
    """Scheme, host and path only: receiver URLs may carry tokens in the query or userinfo."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class Outbox:
    """Durable, signed, at-least-once webhook delivery to a fixed list of endpoints.

    ``enqueue`` (or fire-and-forget ``submit``) stores an event; ``start`` launches the one
    delivery worker, which also picks up rows a previous process left; ``aclose`` stops it.
    Backoff and polling knobs are constructor parameters so tests can run in milliseconds.
    ``path`` is the SQLite file (the app's default is :data:`DEFAULT_PATH`); rows keep the
    endpoint they were queued for, so an event queued before a config change still goes
    where it was meant to.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        endpoints: Iterable[str],
        secret: str,
        *,
        http_timeout_s: float = 5.0,
        max_age_s: float = 72 * 3600,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 600.0,
        idle_poll_s: float = 30.0,
        batch_size: int = 50,
        on_result: ResultHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._store = OutboxStore(path)
        self._endpoints = list(dict.fromkeys(endpoints))
        self._signer = Webhook(secret)  # fails fast on a malformed secret
        self._http_timeout_s = http_timeout_s
        self._max_age_s = max_age_s
        self._wait = tenacity.wait_random_exponential(
            multiplier=backoff_base_s, max=backoff_max_s, min=backoff_base_s
        )
        self._idle_poll_s = idle_poll_s
        self._batch_size = batch_size
        self._on_result = on_result
        self._transport = transport
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._submits: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> str:
        return self._store.path

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    # ---- producing --------------------------------------------------------------------------

    async def enqueue(
        self,
        event: dict[str, Any],
        *,
        webhook_id: str | None = None,
        also: Callable[[sqlite3.Connection], object] | None = None,
    ) -> str:
        """Store ``event`` for every endpoint; returns its webhook id once it is on disk.

        Passing a ``webhook_id`` that is already stored is a no-op (idempotent producers).
        ``also`` changes other tables of this file in the same transaction (see
        :meth:`OutboxStore.transaction`); it runs even when no endpoint is configured.
        """
        webhook_id = webhook_id or new_webhook_id()
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        event_type = str(event.get("type", ""))
        if not self._endpoints:
            log.debug("no post-call endpoints configured; event %s dropped", webhook_id)
            if also is None:
                return webhook_id
        await asyncio.to_thread(
            self._store.insert, webhook_id, event_type, body, self._endpoints, time.time(), also
        )
        self._wake.set()
        return webhook_id

    async def in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on this outbox's database, off the event loop."""
        return await asyncio.to_thread(self._store.transaction, fn)

    def submit(self, event: dict[str, Any], *, webhook_id: str | None = None) -> str:
        """Enqueue from synchronous code (end listeners): persists in a task the outbox owns
        and awaits in :meth:`aclose`, so a clean shutdown does not lose it."""
        webhook_id = webhook_id or new_webhook_id()
        task = asyncio.get_running_loop().create_task(
            self._enqueue_logged(event, webhook_id), name=f"outbox-enqueue:{webhook_id}"
        )
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)
        return webhook_id

    async def _enqueue_logged(self, event: dict[str, Any], webhook_id: str) -> None:
        try:
            await self.enqueue(event, webhook_id=webhook_id)
        except Exception:
            log.exception(
                "event could not be stored; it is lost",
                extra={"webhook_id": webhook_id, "event_type": event.get("type")},
            )

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (surfacing a bad path now) and launch the delivery worker."""
        if self._worker is not None and not self._worker.done():
            return
        await asyncio.to_thread(self._store.open)
        self._worker = asyncio.create_task(self._run(), name="outbox-worker")

    async def aclose(self, *, submit_timeout_s: float = 5.0) -> None:
        """Finish storing submitted events, stop the worker, close the database.

        An attempt cut short here is simply retried by the next process (at least once).
        """
        if self._submits:
            await asyncio.wait(set(self._submits), timeout=submit_timeout_s)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await asyncio.to_thread(self._store.close)

    async def __aenter__(self) -> Outbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def pending_count(self) -> int:
        return await asyncio.to_thread(self._store.count, PENDING)

    async def dead_count(self) -> int:
        return await asyncio.to_thread(self._store.count, DEAD)

    # ---- delivering -------------------------------------------------------------------------

    async def _run(self) -> None:
        timeout = httpx.Timeout(self._http_timeout_s)
        async with httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"user-agent": "callserver-webhooks"},
            transport=self._transport,
            verify=client_tls(),
        ) as client:
            while True:
                try:
                    await self._tick(client)
                except Exception:
                    # The database or something unexpected failed: keep the worker alive,
                    # the rows are still on disk.
                    log.exception("outbox worker error; retrying")
                    await asyncio.sleep(min(self._idle_poll_s, 5.0))

    async def _tick(self, client: httpx.AsyncClient) -> None:
        self._wake.clear()  # before reading, so an enqueue during the read is not missed
        rows = await asyncio.to_thread(self._store.due, time.time(), self._batch_size)
        if rows:
            # Wait for every attempt, even when one fails, so that no attempt is still in
            # flight when the next read picks its row up again.
            results = await asyncio.gather(
                *(self._attempt(client, row) for row in rows), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise errors[0]
            return
        next_at = await asyncio.to_thread(self._store.next_due_at)
        delay = self._idle_poll_s
        if next_at is not None:
            delay = min(max(next_at - time.time(), 0.0), delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    def _headers(self, row: OutboxRow) -> dict[str, str]:
        now = datetime.datetime.now(tz=datetime.UTC)
        return {
            "content-type": "application/json",
            "webhook-id": row.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(row.webhook_id, now, row.body),
        }

    async def _attempt(self, client: httpx.AsyncClient, row: OutboxRow) -> None:
        error: str | None
        try:
            response = await client.post(
                row.endpoint, content=row.body.encode(), headers=self._headers(row)
            )
            error = None if response.is_success else f"HTTP {response.status_code}"
        except Exception as exc:  # network errors, timeouts, invalid URLs: all retried
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = row.attempts + 1
        fields = {
            "webhook_id": row.webhook_id,
            "event_type": row.event_type,
            "endpoint": safe_url(row.endpoint),
            "attempts": attempts,
        }
        if error is None:
            await asyncio.to_thread(self._store.delivered, row.id)
            log.info("webhook delivered", extra=fields)
            self._report("delivered")
            return
        now = time.time()
        deadline = row.created_at + self._max_age_s
        if now >= deadline:
            await asyncio.to_thread(self._store.bury, row.id, attempts, error)
            log.error("webhook given up after %d attempts: %s", attempts, error, extra=fields)
            self._report("dead")
            return
        # The last attempt lands on the deadline rather than being skipped past it.
        next_at = min(now + self._backoff(attempts), deadline)
        await asyncio.to_thread(self._store.reschedule, row.id, attempts, next_at, error)
        log.warning(
            "webhook attempt failed (%s); retry in %.1fs", error, next_at - now, extra=fields
        )
        self._report("retry")

    def _backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``, from tenacity's exponential-jitter policy."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempts
        return float(self._wait(state))

    def _report(self, result: str) -> None:
        if self._on_result is not None:
            try:
                self._on_result(result)
            except Exception:
                log.exception("outbox result hook failed")
