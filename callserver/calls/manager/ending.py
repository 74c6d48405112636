"""The one way a call ends or is transferred, and what ending it releases."""

from __future__ import annotations

import asyncio
import time

from callserver.calls import outbound as outbound_calls
from callserver.calls.manager.state import (
    HANGUP_TIMEOUT_S,
    SIP_DECLINE,
    TASK_STOP_TIMEOUT_S,
    ManagerState,
    log,
)
from callserver.calls.records import CallRecord, CallState
from callserver.engines.base import PostCallJob
from callserver.engines.errors import ControlError


class Ending(ManagerState):
    """Ends calls exactly once, whoever asks, and finalises their records."""

    def spawn_end(self, call_id: str, reason: str, hangup: bool = True) -> None:
        """Schedule :meth:`end` from code that must not wait for it (tools, callbacks)."""
        self._own(self.end(call_id, reason, hangup=hangup), name=f"end:{call_id}")

    async def end(self, call_id: str, reason: str, *, hangup: bool = True) -> bool:
        """End a call, once. Returns False if it was already ending or ended.

        ``hangup``: we are the ones ending a call that may still be connected, so tell OpenAI
        (404 = already gone = fine). When the caller hung up there is nothing to tell.
        A call owned by another instance is routed to its owner (or hung up here if the
        owner is gone); that may raise RegistryUnavailable.
        """
        if self.coordinator is not None and not self.registry.is_local(call_id):
            route = await self.coordinator.request_end(call_id, reason)
            return route in ("routed", "hung_up")
        record = await self.registry.get(call_id)
        if record is None:
            return False
        if not record.live:
            event = self._ended.get(call_id)
            if event is not None and asyncio.current_task() is not self._tasks.get(call_id):
                await event.wait()
            return False
        previous = record.state
        record.transition(CallState.ENDING)
        record.end_reason = reason
        task = self._tasks.get(call_id)
        other_task = task is not None and task is not asyncio.current_task()
        try:
            if hangup and previous is CallState.ACTIVE:
                await self._hangup(record)
                wait_s = self._engine(record).close_wait_s
                if other_task and wait_s > 0 and task is not None and not task.done():
                    await asyncio.wait({task}, timeout=wait_s)  # the engine's final word
        finally:
            if other_task and task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=TASK_STOP_TIMEOUT_S)
            if hangup and previous is CallState.ACCEPTING:
                # An accept may have landed while we cancelled it: make sure no caller is
                # left connected to nobody.
                await self._hangup(record)
            elif hangup and previous is CallState.INCOMING and record.direction == "outbound":
                await self._cancel_dial(record)  # ours, still ringing: cancel the leg
            elif hangup and previous is CallState.INCOMING:
                # Still ringing: decline it rather than leave it ringing until a timeout.
                await self._reject_quietly(record)
            await self._finalize(record)
        return True

    async def _reject_quietly(self, record: CallRecord) -> None:
        try:
            await self._engine(record).control.reject(
                record.engine_id, SIP_DECLINE, deadline=time.monotonic() + HANGUP_TIMEOUT_S
            )
        except ControlError as exc:
            log.info(
                "reject of a ringing call failed: %s", exc.detail, extra={"call_id": record.call_id}
            )

    async def _hangup(self, record: CallRecord) -> None:
        try:
            await self._engine(record).control.hangup(
                record.engine_id, deadline=time.monotonic() + HANGUP_TIMEOUT_S
            )
        except ControlError as exc:
            log.error("hangup failed: %s", exc.detail, extra={"call_id": record.call_id})

    async def _cancel_dial(self, record: CallRecord) -> None:
        plan = self._plans.get(record.call_id)
        if plan is None:
            return
        try:
            await plan.dialer.cancel(record)
        except Exception as exc:
            log.warning(
                "cancelling the outbound leg failed: %s",
                type(exc).__name__,
                extra={"call_id": record.call_id},
            )

    async def hangup_orphan(self, call_id: str) -> None:
        """Hang up a call whose owner died (the coordinator's sweep); raises ControlError so
        the sweep can retry. The shared record says which engine runs it."""
        record = await self.registry.get(call_id)
        engine = self._engines.get(record.engine if record else "realtime")
        if engine is None:
            raise ControlError("hangup", None, f"no {record.engine if record else '?'} engine")
        engine_id = record.engine_id if record is not None else call_id
        await engine.control.hangup(engine_id, deadline=time.monotonic() + HANGUP_TIMEOUT_S)

    async def _finalize(self, record: CallRecord) -> None:
        call_id = record.call_id
        handle = self._handles.pop(call_id, None)
        if handle is not None:
            handle.close()
        session = self._sessions.pop(call_id, None)
        job = session.post_call_job() if session is not None else None
        if job is not None:
            record.recording = {"status": "pending"}
            self._own(self._post_call(record, job), name=f"post-call:{call_id}")
        now = time.monotonic()
        for tool_call in record.tool_calls:
            if tool_call.outcome == "running":  # the session's close cancelled it
                tool_call.outcome = "cancelled"
                tool_call.duration_s = now - tool_call.started_at
                self.metrics.tool_finished(tool_call.name, "cancelled", tool_call.duration_s)
        plan = self._plans.pop(call_id, None)
        if plan is not None:
            plan.placed.set()
        outbound_calls.settle(record)
        record.transition(CallState.ENDED)
        try:
            await self.registry.release_slot(call_id)
            await self.registry.finished(record)
        except Exception:
            # A shared registry that is down must not keep the call (or its record) from
            # ending here; its lease lapses and the slot is reclaimed by the sweep.
            log.exception("registry update failed while ending", extra={"call_id": call_id})
        self._tasks.pop(call_id, None)
        event = self._ended.pop(call_id, None)
        if event is not None:
            event.set()
        log.info(
            "call ended",
            extra={
                "call_id": call_id,
                "graph": record.graph,
                "end_reason": record.end_reason,
                "duration_s": round(record.duration_s(), 3),
            },
        )
        self.metrics.call_ended(record, cleanup_s=record.cleanup_s(), include_details=False)
        await self._recordings.finish(record)
        for listener in self.end_listeners:
            try:
                listener(record)
            except Exception:
                log.exception("end listener failed", extra={"call_id": call_id})

    async def _post_call(self, record: CallRecord, job: PostCallJob) -> None:
        """The engine's after-the-call work (a stored recording's download), in a worker
        thread: it never delays the end of the call, its slot or its post-call event."""
        result = await asyncio.to_thread(job, self._stopping)
        record.recording = {"status": "saved" if "file" in result else "failed", **result}
        log.info("post-call job %s", record.recording["status"], extra={"call_id": record.call_id})

    async def transfer(self, call_id: str, target_uri: str, *, reason: str = "transferred") -> None:
        """Cold-transfer a live call (SIP REFER), then end our side of it without a hangup:
        the phone call now belongs to the transfer target."""
        if self.coordinator is not None and not self.registry.is_local(call_id):
            if await self.coordinator.request_transfer(call_id, target_uri, reason) != "routed":
                raise LookupError(call_id)
            return
        record = await self.registry.get(call_id)
        if record is None or record.state is not CallState.ACTIVE:
            raise LookupError(call_id)
        engine = self._engine(record)
        await engine.control.refer(
            record.engine_id, target_uri, deadline=time.monotonic() + HANGUP_TIMEOUT_S
        )
        record.transfer_target = target_uri
        if engine.refer_settle_s <= 0:
            self.spawn_end(call_id, reason, hangup=False)
        else:
            self._own(
                self._settle_transfer(call_id, reason, engine.refer_settle_s),
                name=f"refer:{call_id}",
            )

    async def _settle_transfer(self, call_id: str, reason: str, wait_s: float) -> None:
        """After a REFER the engine normally closes the session itself; if it does not within
        ``wait_s`` (what GPT-Live does after a REFER is not documented), hang up so the
        session does not run on with nobody on it."""
        event = self._ended.get(call_id)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), wait_s)
        except TimeoutError:
            log.info(
                "session still open after the transfer: hanging up", extra={"call_id": call_id}
            )
            await self.end(call_id, reason, hangup=True)

    async def end_by_call_sid(self, call_sid: str, reason: str) -> bool:
        """End the call a Twilio CallSid maps to (X-Twilio-CallSid); False if none is live."""
        record = await self.registry.by_call_sid(call_sid)
        if record is None:
            return False
        return await self.end(record.call_id, reason, hangup=True)
