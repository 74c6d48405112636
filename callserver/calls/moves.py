"""Live calls moving between instances: handed over on a deploy, adopted after a crash.

The phone audio flows between the carrier and OpenAI; an instance only holds the call's
control connection. So a call can change instances mid-call: another instance attaches to
the same call and carries on with the call's own graph version (``config_store.py``), its
record (transcript, tools, current agent, DTMF keys pending), and its timers.

**Hand-over** (SIGTERM with a healthy peer), make-before-break where the engine allows two
control connections at once:

1. the leaving instance A asks a peer B to ``adopt`` the call *held*;
2. B attaches with events held back (``engines/gate.py``) and answers ``adopt_ready``;
3. A stops acting on events, lets the tools it started finish (their outputs go out on its
   connection), gives the call to B in Redis (one atomic script), and sends ``released``
   with the id of the last event it acted on;
4. B drops what it held up to that event and acts on the rest; A closes its connection.

Where a second connection is refused (B answers ``adopt_failed`` / ``busy_connection``), the
hand-over is make-after-break: A stops, finishes its tools, gives the call to B, closes;
then B attaches (Live replays the last 3 s, minus the event ids A handled; Realtime replays
nothing, so events in the gap are lost) and the gap is measured. With no peer, or when a
peer fails, A keeps the call and drains it as before.

**Adoption** after a crash: the orphan sweep's claimant takes the call on (``adopt_orphan``)
instead of hanging it up; it hangs up only when the attach fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from callserver.calls.records import CallState
from callserver.calls.registry import RegistryUnavailable
from callserver.engines.base import Takeover, handshake_status
from callserver.engines.live.sideband import AttachRefused

if TYPE_CHECKING:
    from callserver.calls.config_store import ConfigStore
    from callserver.calls.manager import CallManager
    from callserver.calls.redis_registry import RedisRegistry
    from callserver.config_holder import ConfigHolder
    from callserver.graph.spec import GraphSpec

log = logging.getLogger(__name__)

ADOPT_TIMEOUT_S = 8.0
"""How long a peer may take to attach to a call it is asked to adopt."""
TOOLS_TIMEOUT_S = 10.0
"""How long a leaving instance lets the tools it started finish before it lets go."""
HELD_TIMEOUT_S = 30.0
"""A peer holding a call gives up on it if the owner never lets go (the owner died: the
sweep then adopts it)."""
ATTACH_TIMEOUT_S = 8.0
PARALLEL = 16
"""Calls handed over at once."""
BUSY = "busy_connection"


class CallMoves:
    """One per instance sharing Redis; driven by the coordinator's messages and the drain."""

    def __init__(
        self,
        manager: CallManager,
        registry: RedisRegistry,
        config: ConfigHolder,
        store: ConfigStore,
    ) -> None:
        self._manager = manager
        self._registry = registry
        self._config = config
        self._store = store
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._held: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gaps: list[float] = []
        """Seconds without control of each make-after-break hand-over (for benchmarks)."""

    @property
    def me(self) -> str:
        return self._registry.instance_id

    async def aclose(self) -> None:
        for timer in self._held.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _send(self, to: str, action: str, call_id: str, **fields: Any) -> bool:
        request = {"action": action, "call_id": call_id, "reason": action, **fields}
        return await self._registry.publish_request(to, request) > 0

    # ---- the leaving instance -----------------------------------------------------------

    async def hand_over_all(self) -> list[str]:
        """Hand every live call to peers; returns the ids of the calls handed over."""
        self._registry.moves.draining = True
        try:
            await self._registry.moves.heartbeat(len(self._manager.task_names()))
        except RegistryUnavailable:
            return []
        records = [
            r for r in await self._registry.live_calls() if self._registry.is_local(r.call_id)
        ]
        calls = [r.call_id for r in records if r.state is CallState.ACTIVE]
        if not calls:
            return []
        slots = asyncio.Semaphore(PARALLEL)

        async def one(call_id: str) -> bool:
            async with slots:
                try:
                    return await self.hand_over(call_id)
                except Exception:
                    log.exception("hand-over failed", extra={"call_id": call_id})
                    return False

        results = await asyncio.gather(*(one(c) for c in calls))
        moved = [c for c, ok in zip(calls, results, strict=True) if ok]
        log.warning("handed over %d of %d call(s)", len(moved), len(calls))
        return moved

    async def hand_over(self, call_id: str) -> bool:
        """Move one call to the least busy peer; False (the call stays here) if none can."""
        try:
            peers = await self._registry.moves.peers()
        except RegistryUnavailable:
            return False
        for peer, _ in peers[:2]:  # a second peer if the first cannot take it
            record = await self._registry.get(call_id)
            if record is None or not record.live:
                return False
            await self._registry.put(record)  # the freshest record for the peer to read
            reply = await self._ask(peer, call_id, "adopt", mode="held")
            if reply is None:
                continue
            if reply["action"] == "adopt_ready":
                return await self._let_go(call_id, peer, held=True)
            if reply.get("why") == BUSY:
                return await self._let_go(call_id, peer, held=False)
        return False

    async def _ask(
        self, peer: str, call_id: str, action: str, **fields: Any
    ) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = future
        try:
            if not await self._send(peer, action, call_id, **fields):
                return None
            return await asyncio.wait_for(future, ADOPT_TIMEOUT_S)
        except (TimeoutError, RegistryUnavailable):
            log.warning("peer %s did not take the call", peer, extra={"call_id": call_id})
            return None
        finally:
            self._replies.pop(call_id, None)

    async def _let_go(self, call_id: str, peer: str, *, held: bool) -> bool:
        """Stop acting, finish our tools, give the call to ``peer``; then release it."""
        session = self._manager.session(call_id)
        record = await self._registry.get(call_id)
        if session is None or record is None or not record.live:
            return False
        last = await self._manager.hold(call_id, tools_timeout=TOOLS_TIMEOUT_S)
        seen = session.engine_call.seen_ids()
        await self._registry.put(record)
        await self._registry.forget(call_id)  # no renewal may claim it back meanwhile
        if not await self._registry.moves.transfer(call_id, peer):
            log.error("hand-over: the call is not ours to give", extra={"call_id": call_id})
            return False
        if held:
            await self._send(peer, "released", call_id, last_event_id=last or "")
            await self._manager.release(call_id)
            log.info("call handed over to %s", peer, extra={"call_id": call_id})
            return True
        await self._manager.release(call_id)  # break: the peer attaches only now
        broke = time.monotonic()
        reply = await self._ask(peer, call_id, "adopt", mode="after_break", seen=seen[-256:])
        gap = time.monotonic() - broke
        self.gaps.append(gap)
        ok = reply is not None and reply["action"] == "adopt_ready"
        log.info(
            "call handed over to %s after a break of %.2fs", peer, gap, extra={"call_id": call_id}
        ) if ok else log.error("peer %s failed after the break", peer, extra={"call_id": call_id})
        return True  # ours no longer either way: a failed peer's lease lapses to the sweep

    # ---- the instance taking over ------------------------------------------------------

    def on_message(self, message: dict[str, Any]) -> None:
        """A move message from another instance (from the coordinator's subscription)."""
        action, call_id = message.get("action"), str(message.get("call_id"))
        if action in ("adopt_ready", "adopt_failed"):
            future = self._replies.get(call_id)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if action == "adopt":
            self._spawn(self._adopt(message), f"adopt:{call_id}")
        elif action == "released":
            self._spawn(self._released(message), f"released:{call_id}")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _graph_for(self, graph_name: str | None, config_hash: str | None) -> GraphSpec | None:
        config = self._config.by_hash(config_hash)
        if config is None and config_hash:
            config = await self._store.fetch(config_hash)
        return config.graphs.get(graph_name or "") if config is not None else None

    async def _adopt(self, message: dict[str, Any]) -> None:
        call_id, sender = str(message["call_id"]), str(message.get("from"))
        held = message.get("mode") == "held"
        why = await self._attach(
            call_id, Takeover(held=held, seen=tuple(message.get("seen") or ()))
        )
        if why is not None:
            await self._send(sender, "adopt_failed", call_id, why=why)
            return
        if held:
            loop = asyncio.get_running_loop()
            self._held[call_id] = loop.call_later(HELD_TIMEOUT_S, self._give_up_held, call_id)
        else:
            await self._own(call_id)
        await self._send(sender, "adopt_ready", call_id)

    async def _attach(self, call_id: str, takeover: Takeover) -> str | None:
        """Attach to a call from its shared record; None, or why it could not be done."""
        if self._manager.draining:
            return "draining"
        record = await self._registry.get(call_id)
        if record is None or not record.live:
            return "unknown_call"
        graph = await self._graph_for(record.graph, record.config_hash)
        if graph is None:
            return "config_unavailable"
        error = await self._manager.take_over(
            record, graph, takeover, attach_timeout=ATTACH_TIMEOUT_S
        )
        if error is None:
            return None
        if isinstance(error, AttachRefused) or handshake_status(error) == 409:
            return BUSY
        return "attach_failed"

    async def _own(self, call_id: str) -> None:
        record = await self._registry.get(call_id)
        if record is not None:
            await self._registry.adopt(record, record.graph or "")
            self._manager.metrics.call_moved(record.graph, call_id, arrived=True)

    async def _released(self, message: dict[str, Any]) -> None:
        call_id = str(message["call_id"])
        timer = self._held.pop(call_id, None)
        if timer is not None:
            timer.cancel()
        session = self._manager.session(call_id)
        if session is None:
            return
        await self._own(call_id)
        session.engine_call.release_after(message.get("last_event_id") or None)
        log.info("took the call over from %s", message.get("from"), extra={"call_id": call_id})

    def _give_up_held(self, call_id: str) -> None:
        self._held.pop(call_id, None)
        log.warning("held call never released: letting it go", extra={"call_id": call_id})
        self._spawn(self._manager.drop_unowned(call_id), f"give-up:{call_id}")

    # ---- after a crash -------------------------------------------------------------------

    async def adopt_orphan(self, call_id: str) -> bool:
        """The sweep claimed a dead instance's call: carry it on. False if that failed (the
        sweep then hangs it up)."""
        record = await self._registry.get(call_id)
        if record is None or self._manager.draining:
            log.warning("orphan not adopted: no record, or draining", extra={"call_id": call_id})
            return False
        graph = await self._graph_for(record.graph, record.config_hash)
        if graph is None:
            log.warning(
                "orphan not adopted: its graph version is unavailable here",
                extra={"call_id": call_id},
            )
            return False
        if not await self._registry.moves.take_orphan(call_id):
            log.warning("orphan not adopted: already taken", extra={"call_id": call_id})
            return False
        record.state = CallState.ACTIVE
        record.end_reason = None
        await self._registry.adopt(record, record.graph or "")
        error = await self._manager.take_over(
            record, graph, Takeover(), attach_timeout=ATTACH_TIMEOUT_S
        )
        if error is None:
            self._manager.metrics.call_moved(record.graph, call_id, arrived=True)
            log.warning("adopted a call whose instance died", extra={"call_id": call_id})
            return True
        log.warning("orphan not adopted: attach failed: %s", error, extra={"call_id": call_id})
        await self._registry.forget(call_id)
        return False
