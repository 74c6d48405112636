"""The campaign runner: each instance's loop that claims due rows and dials them.

Per running campaign, one loop: take the row due first, hold it back outside its calling
window (``defer``) or on a do-not-call list (``skip``), then ``claim`` it in the store, which
is where the pace, ``max_concurrent`` and "only one instance dials a row" are decided,
atomically. A claimed row becomes one call through the outbound service; its end writes the
outcome, and the retry policy decides whether the row is due again later. Nothing is dialed
without a claim; a claim whose call was not handed over (no room) is given back.

Liveness: the runner refreshes its heartbeat and, every so often, marks the claims of
runners that are gone ``unknown`` (``store.recover``): a process killed mid-call never gets
its rows dialed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from callserver.calls.outbound import OutboundRefused
from callserver.calls.registry import RegistryUnavailable
from callserver.outbound.campaigns.attempt import AttemptResult
from callserver.outbound.campaigns.spec import CampaignSpec
from callserver.outbound.campaigns.store import CampaignStore, RowState
from callserver.outbound.live_dialer import NOT_ENABLED_MESSAGE
from callserver.outbound.request import CallRequest, RequestError
from callserver.outbound.service import Blocked, OutboundService

log = logging.getLogger(__name__)

FINISH_RETRY_S = 300.0
"""How long the outcome of an attempt is retried into an unreachable store."""


class CampaignRunner:
    """See the module docstring; one per app, started and stopped by the lifespan."""

    def __init__(
        self,
        store: CampaignStore,
        outbound: OutboundService,
        *,
        owner: str,
        poll_s: float = 1.0,
        lease_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._outbound = outbound
        self.owner = owner
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._clock = clock
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._attempts: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        try:
            await self.store.heartbeat(self.owner, self._lease_s)
            recovered = await self.store.recover(self.owner, self._clock())
        except RegistryUnavailable as exc:
            log.error("campaign store unavailable at start: %s", exc)
            recovered = 0
        if recovered:
            log.warning(
                "%d campaign row(s) were being dialed by a stopped instance: marked unknown, "
                "never dialed again",
                recovered,
            )
        self._task = asyncio.create_task(self._supervise(), name="campaigns")

    def wake(self) -> None:
        """Look at the campaigns now (one was created or resumed)."""
        self._wake.set()

    def stop_dialing(self) -> None:
        """No new claims from here on (shutdown): calls in flight go on."""
        self._stopping = True
        self._wake.set()
        self._ended.set()

    async def aclose(self) -> None:
        """After the manager's drain: wait for the attempts to write their outcomes."""
        self.stop_dialing()
        tasks = [t for t in (self._task, *self._loops.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._attempts:
            await asyncio.wait(self._attempts, timeout=10.0)
        for task in list(self._attempts):
            task.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)
        await self.store.close()

    @property
    def attempts_in_flight(self) -> int:
        return len(self._attempts)

    # ---- the loops ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        last_sweep = 0.0
        while not self._stopping:
            try:
                await self.store.heartbeat(self.owner, self._lease_s)
                now = self._clock()
                if now - last_sweep >= self._lease_s / 2:
                    last_sweep = now
                    recovered = await self.store.recover(self.owner, now)
                    if recovered:
                        log.warning("%d row(s) of a lost instance marked unknown", recovered)
                for campaign_id in await self.store.running():
                    loop = self._loops.get(campaign_id)
                    if loop is None or loop.done():
                        self._loops[campaign_id] = asyncio.create_task(
                            self._campaign(campaign_id), name=f"campaign:{campaign_id}"
                        )
            except RegistryUnavailable as exc:
                log.warning("campaign store unavailable: %s", exc)
            except Exception:
                log.exception("campaign supervisor failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(min(seconds, self._poll_s))

    async def _campaign(self, campaign_id: str) -> None:
        try:
            info = await self.store.get(campaign_id)
            if info is None:
                return
            spec = info.spec
            while not self._stopping:
                if not await self._step(campaign_id, spec):
                    return
        except RegistryUnavailable as exc:
            log.warning("campaign %s paused here: store unavailable (%s)", campaign_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("campaign loop failed", extra={"campaign_id": campaign_id})

    async def _step(self, campaign_id: str, spec: CampaignSpec) -> bool:
        """One decision; False when this campaign's loop should stop."""
        outbound = self._outbound
        if not outbound.has_room():
            await outbound.wait_room(self._poll_s)
            return True
        now = self._clock()
        row, next_at = await self.store.due(campaign_id, now)
        if row is None:
            if next_at is not None:
                await self._sleep(next_at - now)
                return True
            if await self.store.complete_if_done(campaign_id):
                log.info("campaign completed", extra={"campaign_id": campaign_id})
                return False
            info = await self.store.get(campaign_id)
            if info is None or info.state != "running":
                return False
            await self._sleep(self._poll_s)  # the last rows are in flight (here or elsewhere)
            return True
        zone = row.timezone or spec.timezone
        if spec.window is not None and not spec.window.is_open(now, zone):
            await self.store.defer(campaign_id, row.row, spec.window.next_open(now, zone))
            return True
        if outbound.dnc.blocked(row.to, spec.do_not_call):
            await self.store.skip(campaign_id, row.row, "dnc")
            return True
        claim = await self.store.claim(campaign_id, row.row, now, self.owner)
        if claim.result == "ok":
            task = asyncio.create_task(
                self._attempt(campaign_id, spec, row, claim.attempt),
                name=f"attempt:{campaign_id}:{row.row}",
            )
            self._attempts.add(task)
            task.add_done_callback(self._attempt_done)
        elif claim.result in ("pace", "not_due"):
            await self._sleep(claim.wait_s)
        elif claim.result == "busy":
            self._ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), self._poll_s)
        elif claim.result == "stopped":
            return False
        return True

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        self._ended.set()

    # ---- one attempt -------------------------------------------------------------------------

    async def _attempt(
        self, campaign_id: str, spec: CampaignSpec, row: RowState, attempt: int
    ) -> None:
        store, owner = self.store, self.owner
        request = CallRequest(
            to=row.to,
            graph=spec.graph,
            variables=row.variables,
            from_=spec.from_,
            dialer=spec.dialer,
        )
        meta = {"campaign_id": campaign_id, "row": row.row, "attempt": attempt}

        def ended(
            outcome: str,
            call_id: str | None = None,
            detail: str | None = None,
            retry_at: float | None = None,
        ) -> AttemptResult:
            return AttemptResult(
                campaign_id=campaign_id,
                row=row.row,
                owner=owner,
                attempt=attempt,
                outcome=outcome,
                now=self._clock(),
                call_id=call_id,
                detail=detail,
                retry_at=retry_at,
            )

        try:
            dialed = await self._outbound.place(request, campaign=meta, dnc=spec.do_not_call)
        except Blocked:
            await store.unclaim(campaign_id, row.row, owner)
            await store.skip(campaign_id, row.row, "dnc")
            return
        except OutboundRefused:
            await store.unclaim(campaign_id, row.row, owner)  # not dialed: due again
            return
        except RequestError as exc:  # e.g. a reload removed the graph: nothing dialed, final
            await self._finish(ended("failed", detail=exc.message))
            return
        except Exception:
            # Not knowing whether a call went out, the row is never dialed again.
            log.exception("campaign attempt failed", extra={"campaign_id": campaign_id})
            await self._finish(ended("unknown", detail="internal error"))
            return
        call_id = dialed.record.call_id
        with contextlib.suppress(RegistryUnavailable):
            await store.attach_call(campaign_id, row.row, owner, call_id)
        record = await dialed.ended
        info = record.outbound or {}
        # No outcome yet: the call moved to another instance (a hand-over at shutdown) and
        # ends there; answered, it is a completed call, else nobody can tell.
        outcome = str(info.get("outcome") or ("completed" if info.get("answered") else "unknown"))
        if info.get("error_code") == "outbound_sip_not_enabled":
            # Refused for sure (nothing placed), and every row would be: give it back and
            # pause the campaign with the reason, once.
            await store.unclaim(campaign_id, row.row, owner)
            await store.set_state(campaign_id, "paused", NOT_ENABLED_MESSAGE)
            log.error(
                "campaign paused: %s", NOT_ENABLED_MESSAGE, extra={"campaign_id": campaign_id}
            )
            return
        retry_at = spec.retry.retry_at(outcome, attempt, self._clock())
        await self._finish(ended(outcome, call_id, info.get("error"), retry_at))

    async def _finish(self, result: AttemptResult) -> None:
        """Write the attempt's outcome; retried while the store is unreachable (the row
        stays ``dialing`` meanwhile: never due, never dialed). Each try is stamped with
        the time it is made."""
        deadline = time.monotonic() + FINISH_RETRY_S
        delay = 0.1
        while True:
            try:
                await self.store.finish(dataclasses.replace(result, now=self._clock()))
                return
            except RegistryUnavailable as exc:
                if time.monotonic() > deadline:
                    log.error(
                        "campaign outcome lost: %s", exc, extra={"campaign_id": result.campaign_id}
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
