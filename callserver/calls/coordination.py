"""What several instances do for each other over Redis: leases, routed ends, orphan sweep.

One :class:`Coordinator` per instance owns three background tasks:

1. **Lease renewal**: every ``lease_s / 3`` the instance re-asserts its calls in Redis. A call
   it finds it has lost (a survivor swept it while we could not renew) is ended locally.
2. **End routing**: an end request (Twilio status callback, admin hangup) that lands on an
   instance which does not own the call is published on the owner's channel; the owner's
   subscriber passes it to ``on_end_request`` -- the manager's one end path.
3. **Orphan sweep**: calls whose lease expired (owner killed) are claimed atomically, so one
   survivor acts; it hangs them up at OpenAI (``on_orphan``), records them ended with reason
   ``owner_lost`` and frees their slots. Detection takes at most ``lease_s + sweep_interval_s``
   after the owner's last renewal.

An instance only sweeps after it has been connected to Redis for a full lease period: after a
Redis outage every owner's lease looks expired, and live owners must get the chance to renew
before anyone treats their calls as orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from callserver.calls.records import CallState
from callserver.calls.redis_registry import RedisRegistry
from callserver.calls.registry import RegistryUnavailable

log = logging.getLogger(__name__)

EndRequestFn = Callable[[str, str], Awaitable[object]]
"""(call_id, reason): end a call this instance owns (wire to ``CallManager.end``)."""
OrphanFn = Callable[[str], Awaitable[object]]
"""(call_id): hang a call up at OpenAI through REST; a 404 (already gone) must not raise."""
TransferFn = Callable[[str, str, str], Awaitable[object]]
MoveFn = Callable[[dict[str, Any]], None]
"""A call-move message from another instance (``calls/moves.py``: adopt, released...)."""
AdoptFn = Callable[[str], Awaitable[bool]]
"""(call_id): carry on an orphan this instance claimed; False if it could not."""
MOVE_ACTIONS = frozenset({"adopt", "adopt_ready", "adopt_failed", "released"})
"""(call_id, target_uri, reason): transfer a call this instance owns (``CallManager.transfer``)."""
EndRoute = Literal["local", "routed", "hung_up", "unknown"]
TransferRoute = Literal["local", "routed", "unreachable", "unknown"]

RESUBSCRIBE_MAX_S = 5.0
STOP_TIMEOUT_S = 5.0


def _stop_if_cancelled() -> None:
    """Raise if this task was asked to stop but a library swallowed the CancelledError.

    The loops below only run in tasks the coordinator owns, which nobody else cancels, so
    any pending cancel request means ``aclose``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class Coordinator:
    """Background coordination of one instance with the others; ``start`` / ``aclose``."""

    def __init__(
        self,
        registry: RedisRegistry,
        *,
        on_end_request: EndRequestFn | None = None,
        on_orphan: OrphanFn | None = None,
        on_transfer: TransferFn | None = None,
        sweep_interval_s: float | None = None,
        renew_interval_s: float | None = None,
        max_sweep_attempts: int = 5,
        owns_client: bool = False,
    ) -> None:
        self.registry = registry
        self.lease_s = registry.lease_s
        self.sweep_interval_s = sweep_interval_s or max(registry.lease_s / 5, 0.05)
        self.renew_interval_s = renew_interval_s or max(registry.lease_s / 3, 0.05)
        self._on_end_request = on_end_request
        self._on_orphan = on_orphan
        self._on_transfer = on_transfer
        self._on_move: MoveFn | None = None
        self._on_adopt: AdoptFn | None = None
        self._max_attempts = max_sweep_attempts
        self._owns_client = owns_client
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._healthy_since: float | None = None
        self._down_logged = False
        self.subscribed = asyncio.Event()
        """Set while the end-request subscription is live (tests wait on it)."""

    def bind(
        self,
        *,
        on_end_request: EndRequestFn,
        on_orphan: OrphanFn,
        on_transfer: TransferFn | None = None,
        on_move: MoveFn | None = None,
        on_adopt: AdoptFn | None = None,
    ) -> None:
        """Attach the callbacks (the manager is usually built after the registry)."""
        self._on_end_request = on_end_request
        self._on_orphan = on_orphan
        self._on_transfer = on_transfer
        self._on_move = on_move
        self._on_adopt = on_adopt

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._on_end_request is None or self._on_orphan is None:
            raise RuntimeError("Coordinator.bind(on_end_request=..., on_orphan=...) first")
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._renew_loop(), name="coordinator:renew"),
            asyncio.create_task(self._sweep_loop(), name="coordinator:sweep"),
            asyncio.create_task(self._subscribe_loop(), name="coordinator:subscribe"),
        ]

    async def aclose(self) -> None:
        """Stop every task this coordinator started; close the client if it owns it."""
        tasks = self._tasks + list(self._spawned)
        self._tasks = []
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if pending:
                log.error("coordinator tasks did not stop: %s", [t.get_name() for t in pending])
        if self._owns_client:
            await self.registry.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # ---- 1. leases -------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await self.renew_once()
            _stop_if_cancelled()
            await asyncio.sleep(self.renew_interval_s)

    async def renew_once(self) -> bool:
        """One renewal round; False while Redis is unreachable."""
        try:
            lost = await self.registry.renew_leases()
        except RegistryUnavailable as exc:
            if self._healthy_since is not None or not self._down_logged:
                log.error("redis unreachable; calls in progress continue: %s", exc)
                self._down_logged = True
            self._healthy_since = None
            return False
        self._down_logged = False
        if self._healthy_since is None:
            log.info("redis connected", extra={"instance": self.registry.instance_id})
            self._healthy_since = time.monotonic()
        for call_id in lost:
            log.warning("call taken over as orphan by another instance", extra={"call_id": call_id})
            self._spawn(self._end_request(call_id, "owner_lost"), name=f"lost:{call_id}")
        return True

    # ---- 2. routing of ends ----------------------------------------------------------------

    async def request_end(self, call_id: str, reason: str) -> EndRoute:
        """Route an end request for any instance's call.

        ``local``: this instance owns it -- the caller ends it through its own end path.
        ``routed``: the owner received the request. ``hung_up``: the owner is gone (or not
        listening), so this instance hung the call up through REST itself. ``unknown``: no
        live call by that id. Raises RegistryUnavailable when Redis cannot be asked.
        """
        if self.registry.is_local(call_id):
            return "local"
        where = await self.registry.locate(call_id)
        if where is None or where.state == CallState.ENDED.value:
            return "unknown"
        me = self.registry.instance_id
        if where.lease_alive and where.owner and where.owner != me:
            request = {"action": "end", "call_id": call_id, "reason": reason}
            if await self.registry.publish_request(where.owner, request) > 0:
                return "routed"
            log.warning(
                "owner %s not listening; hanging up here", where.owner, extra={"call_id": call_id}
            )
            await self._hangup(call_id)
            return "hung_up"
        if where.lease_alive:
            # Ours by name but not in memory: a previous life of this instance id.
            await self._hangup(call_id)
            return "hung_up"
        return (
            "hung_up" if await self._reap(call_id, note=f"end requested: {reason}") else "unknown"
        )

    async def request_transfer(
        self, call_id: str, target_uri: str, reason: str = "transferred"
    ) -> TransferRoute:
        """Route a cold transfer to the call's owner (only the owner can end its session).

        ``local``: transfer it here. ``routed``: the owner received it. ``unreachable``: the
        owner is gone or not listening (the orphan sweep will hang the call up). ``unknown``:
        no live call by that id. Raises RegistryUnavailable when Redis cannot be asked.
        """
        if self.registry.is_local(call_id):
            return "local"
        where = await self.registry.locate(call_id)
        if where is None or where.state in (CallState.ENDED.value, CallState.ENDING.value):
            return "unknown"
        if not where.lease_alive or not where.owner or where.owner == self.registry.instance_id:
            return "unreachable"
        request = {"action": "transfer", "call_id": call_id, "reason": reason}
        request["target"] = target_uri
        if await self.registry.publish_request(where.owner, request) > 0:
            return "routed"
        return "unreachable"

    async def _subscribe_loop(self) -> None:
        channel = self.registry.end_channel(self.registry.instance_id)
        backoff = 0.1
        while True:
            pubsub = self.registry.client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(2.0):
                    await pubsub.subscribe(channel)
                self.subscribed.set()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    _stop_if_cancelled()
                    if message is not None:
                        self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _stop_if_cancelled()
                log.warning("end-request subscription lost (%s); resubscribing", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESUBSCRIBE_MAX_S)

    def _on_message(self, data: Any) -> None:
        try:
            message = json.loads(data)
            if isinstance(message, dict) and message.get("action") in MOVE_ACTIONS:
                if self._on_move is not None:
                    self._on_move(message)
                return
            action = message.get("action", "end")
            call_id, reason = str(message["call_id"]), str(message["reason"])
            target = str(message["target"]) if action == "transfer" else ""
        except (TypeError, ValueError, KeyError, AttributeError):
            log.warning("malformed routed request ignored")
            return
        log.info("%s requested by %s", action, message.get("from"), extra={"call_id": call_id})
        if action == "end":
            self._spawn(self._end_request(call_id, reason), name=f"routed-end:{call_id}")
        elif action == "transfer":
            self._spawn(self._transfer(call_id, target, reason), name=f"routed-transfer:{call_id}")
        else:
            log.warning("unknown routed action %r ignored", action, extra={"call_id": call_id})

    async def _transfer(self, call_id: str, target: str, reason: str) -> None:
        if self._on_transfer is None:
            log.error("transfer routed here but no on_transfer bound", extra={"call_id": call_id})
            return
        try:
            await self._on_transfer(call_id, target, reason)
        except Exception:
            log.exception("routed transfer failed", extra={"call_id": call_id})

    async def _end_request(self, call_id: str, reason: str) -> None:
        assert self._on_end_request is not None
        try:
            await self._on_end_request(call_id, reason)
        except Exception:
            log.exception("routed end failed", extra={"call_id": call_id})

    # ---- 3. orphan sweep -------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            if self.sweep_ready():
                try:
                    await self.sweep_once()
                except RegistryUnavailable as exc:
                    log.warning("orphan sweep skipped: %s", exc)
            _stop_if_cancelled()

    def sweep_ready(self) -> bool:
        """Connected for a full lease, so live owners had their chance to renew."""
        since = self._healthy_since
        return since is not None and time.monotonic() - since >= self.lease_s

    async def sweep_once(self) -> list[str]:
        """Reap every expired call this instance manages to claim; returns their ids."""
        expired = await self.registry.orphans.expired()
        if not expired:
            return []
        results = await asyncio.gather(*(self._reap(c) for c in expired), return_exceptions=True)
        reaped = []
        for call_id, result in zip(expired, results, strict=True):
            if isinstance(result, BaseException):
                log.error("orphan sweep failed: %s", result, extra={"call_id": call_id})
            elif result:
                reaped.append(call_id)
        return reaped

    async def _reap(self, call_id: str, *, note: str | None = None) -> bool:
        """Claim an expired call, hang it up, record it ended as ``owner_lost``."""
        attempts = await self.registry.orphans.claim(call_id)
        if not attempts:
            return False
        if self._on_adopt is not None and note is None:
            try:
                if await self._on_adopt(call_id):
                    return True  # carried on here: nothing to hang up
            except Exception:
                log.exception("adopting an orphan failed", extra={"call_id": call_id})
        log.warning("orphaned call: owner lost, hanging up", extra={"call_id": call_id})
        try:
            await self._hangup(call_id)
        except asyncio.CancelledError:
            # Stopping mid-hangup: hand the orphan back so another sweep finishes the job.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.registry.orphans.requeue(call_id))
            raise
        except Exception as exc:
            if attempts < self._max_attempts:
                log.error("orphan hangup failed, will retry: %s", exc, extra={"call_id": call_id})
                await self.registry.orphans.requeue(call_id)
                return False
            note = f"orphan hangup failed after {attempts} attempts: {exc}"
            log.error(note, extra={"call_id": call_id})
        await self.registry.orphans.finish(call_id, note=note)
        return True

    async def _hangup(self, call_id: str) -> None:
        assert self._on_orphan is not None
        await self._on_orphan(call_id)
