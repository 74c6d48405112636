"""Calls that move between instances (``calls/moves.py`` drives these)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from callserver.calls.manager.state import (
    TASK_STOP_TIMEOUT_S,
    ManagerState,
    log,
)
from callserver.calls.records import CallRecord
from callserver.calls.session import NOT_ATTACHED, CallSession
from callserver.engines.base import Takeover
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.spec import BuiltGraph, GraphSpec
from callserver.logs import bind_call
from callserver.records.recorder import NULL_RECORDER


class Moving(ManagerState):
    """Takes over, holds, releases and forgets calls that change owner."""

    async def take_over(
        self, record: CallRecord, graph: GraphSpec, takeover: Takeover, *, attach_timeout: float
    ) -> BaseException | None:
        """Drive a live call that another instance accepted, from its shared record and the
        graph version it started with; None once attached, else why not. Ownership is the
        caller's business (``registry.adopt``): until then, ends go to the owner."""
        call_id = record.call_id
        if call_id in self._tasks:
            return None
        info = CallInfo(
            call_id=call_id,
            caller=record.caller,
            dialed=record.dialed,
            sip_headers=tuple((str(n), str(v)) for n, v in record.sip_headers),
            received_at=datetime.fromtimestamp(record.created_at, UTC),
        )
        built = graph.build(info)
        handle = self._make_handle(call_id)
        context = CallToolContext(call=info, graph=graph.name, controls=handle)
        engine = self._engines[record.engine]
        session = self._new_session(record, built, context, handle, engine, NULL_RECORDER, takeover)
        self._ended[call_id] = asyncio.Event()
        self._tasks[call_id] = asyncio.create_task(
            self._taken_over(record, built, session), name=f"call:{call_id}"
        )
        try:
            await asyncio.wait_for(session.attached.wait(), attach_timeout)
        except TimeoutError as exc:
            log.error("takeover: attach timed out", extra={"call_id": call_id})
            session.attach_error = session.attach_error or exc
        if session.attach_error is not None or session.session is None:
            await self._forget(call_id)
            return session.attach_error or RuntimeError("not attached")
        return None

    async def _taken_over(
        self, record: CallRecord, built: BuiltGraph, session: CallSession
    ) -> None:
        call_id = record.call_id
        bind_call(call_id=call_id, graph=record.graph)
        try:
            reason, hangup = await self._run_session(record, built, session)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("taken-over call failed", extra={"call_id": call_id})
            reason, hangup = "internal_error", True
        if reason == NOT_ATTACHED:
            return
        if not self.registry.is_local(call_id):
            # Ended while the move was still in progress: the owner ends it, not us.
            await self._forget(call_id)
            return
        if record.transfer_target is not None:
            reason, hangup = "transferred", False
        await self.end(call_id, reason, hangup=hangup)

    async def hold(self, call_id: str, *, tools_timeout: float) -> list[str]:
        """Stop acting on a call's events (it moves to another instance), let the tools it
        started finish (their outputs still go out), and return the ids of the events its
        session acted on lately: the new owner acts on everything else."""
        session = self._sessions.get(call_id)
        record = await self.registry.get(call_id)
        if session is None or record is None:
            raise LookupError(call_id)
        handled = session.engine_call.hold()
        deadline = time.monotonic() + tools_timeout
        while session.engine_call.pending_tool_calls() or any(
            t.outcome == "running" for t in record.tool_calls
        ):
            if time.monotonic() >= deadline:
                log.warning("hand-over: a tool is still running", extra={"call_id": call_id})
                break
            await asyncio.sleep(0.02)
        return handled

    async def release(self, call_id: str) -> None:
        """Let go of a call another instance now owns: its session closes (the call goes on),
        nothing is ended, recorded as ended or counted as ended here."""
        record = await self.registry.get(call_id)
        await self._forget(call_id)
        await self.registry.forget(call_id)
        if record is not None:
            self.metrics.call_moved(record.graph, call_id, arrived=False)
            await self._recordings.moved(record)

    async def drop_unowned(self, call_id: str) -> None:
        """Stop driving a call this instance attached to but never came to own."""
        if not self.registry.is_local(call_id):
            await self._forget(call_id)

    async def _forget(self, call_id: str) -> None:
        """Drop this instance's hold on a call without ending it."""
        task = self._tasks.pop(call_id, None)
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=TASK_STOP_TIMEOUT_S)
        handle = self._handles.pop(call_id, None)
        if handle is not None:
            handle.close()
        self._sessions.pop(call_id, None)
        plan = self._plans.pop(call_id, None)
        if plan is not None:
            plan.placed.set()
        event = self._ended.pop(call_id, None)
        if event is not None:
            event.set()
