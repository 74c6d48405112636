"""Outbound calls: admitted before anything is dialed, then placed and run like any call."""

from __future__ import annotations

import asyncio
import time

from callserver.calls import outbound as outbound_calls
from callserver.calls.manager.state import (
    ManagerState,
    log,
)
from callserver.calls.outbound import DialFailed, OutboundPlan, OutboundRefused
from callserver.calls.records import CallRecord, CallState
from callserver.calls.registry import RegistryUnavailable
from callserver.graph.context import CallToolContext
from callserver.logs import bind_call
from callserver.records.recorder import NULL_RECORDER


class Placing(ManagerState):
    """Starts calls a dialer places."""

    async def start_outbound(self, plan: OutboundPlan) -> CallRecord:
        """Admit and start a call a dialer places (the entry point for outbound calls).

        Admission happens here, before anything is dialed: raises :class:`OutboundRefused`
        (``draining``, ``capacity``, ``registry``) and then nothing was placed. Otherwise the
        call task places the call (``plan.placed`` is set once the dialer's request was
        answered) and runs it like any call, to the one end path.
        """
        record = plan.record
        if self.draining:
            raise OutboundRefused("draining")
        graph = plan.graph
        try:
            admitted = await self.registry.acquire_slot(
                record.call_id, graph.name, graph.limits.max_concurrent
            )
        except RegistryUnavailable:
            raise OutboundRefused("registry") from None
        if not admitted:
            self.metrics.admission_rejected("outbound_capacity")
            raise OutboundRefused("capacity")
        record.graph = graph.name
        record.config_hash = plan.config_hash
        self._plans[record.call_id] = plan
        await self.registry.put(record)
        self._ended[record.call_id] = asyncio.Event()
        self._tasks[record.call_id] = asyncio.create_task(
            self._outbound_task(plan), name=f"call:{record.call_id}"
        )
        return record

    async def _outbound_task(self, plan: OutboundPlan) -> None:
        record = plan.record
        bind_call(call_id=record.call_id, graph=plan.graph.name)
        try:
            reason, hangup = await self._outbound_lifecycle(plan)
        except asyncio.CancelledError:
            raise  # an external end() owns finalisation
        except Exception:
            log.exception("outbound call task failed", extra={"call_id": record.call_id})
            reason, hangup = "internal_error", True
        if record.transfer_target is not None:
            reason, hangup = "transferred", False
        await self.end(record.call_id, reason, hangup=hangup)

    async def _outbound_lifecycle(self, plan: OutboundPlan) -> tuple[str, bool]:
        """Place, (Twilio: wait for the bridged leg and accept it), attach, run."""
        record = plan.record
        engine = self._engines[record.engine]
        built = plan.graph.build(plan.info)
        handle = self._make_handle(record.call_id)
        context = CallToolContext(call=plan.info, graph=plan.graph.name, controls=handle)
        progress = outbound_calls.Progress(
            record,
            end=lambda call_id, reason, hangup: self.spawn_end(call_id, reason, hangup),
            ring_timeout_s=plan.ring_timeout_s,
            on_answered=plan.on_answered,
        )
        try:
            try:
                placement = await plan.dialer.place(record, built, context)
            except DialFailed as exc:
                assert record.outbound is not None
                record.outbound["outcome"] = exc.outcome
                record.outbound["error"] = exc.detail[:300]
                return exc.outcome, False
            finally:
                plan.placed.set()
            if placement.bridge is not None:
                try:
                    call = await placement.bridge()
                except DialFailed as exc:
                    assert record.outbound is not None
                    record.outbound["outcome"] = exc.outcome
                    record.outbound["error"] = exc.detail[:300]
                    return exc.outcome, True
                record.engine_ref = call.call_id
                record.twilio_call_sid = record.twilio_call_sid or call.twilio_call_sid
                progress.answered()
                deadline = time.monotonic() + self._settings.ring_deadline_s
                refused = await self._accept(record, engine, built, context, deadline)
                if refused is not None:
                    return refused[0], True  # the callee answered: hang up their leg
            else:
                record.engine_ref = placement.engine_ref
                record.transition(CallState.ACCEPTING)
            record.transition(CallState.ACTIVE)
            self.metrics.call_started(plan.graph.name, record.call_id)
            log.info(
                "outbound call placed",
                extra={
                    "call_id": record.call_id,
                    "graph": plan.graph.name,
                    "engine": engine.name,
                    "dialer": plan.dialer.name,
                },
            )
            listeners = [progress.on_signal, *plan.listeners]
            session = self._new_session(
                record, built, context, handle, engine, NULL_RECORDER, listeners=listeners
            )
            return await self._run_session(record, built, session)
        finally:
            progress.close()
