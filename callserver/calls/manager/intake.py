"""Incoming calls: from a verified webhook to a running session (or a rejection)."""

from __future__ import annotations

import asyncio
import time

from callserver.calls.manager.state import (
    SIP_BUSY,
    SIP_DECLINE,
    SIP_UNAVAILABLE,
    Draining,
    ManagerState,
    Routed,
    log,
)
from callserver.calls.records import CallRecord, CallState
from callserver.calls.registry import RegistryUnavailable
from callserver.graph.context import CallToolContext
from callserver.logs import bind_call
from callserver.webhooks.openai import IncomingCall


class Intake(ManagerState):
    """Claims, routes, admits, accepts and runs incoming calls."""

    async def handle_incoming(self, call: IncomingCall, *, received: float | None = None) -> str:
        """Claim and start a call; returns ``started``, ``duplicate`` or ``other_engine``.

        Raises :class:`Draining` while shutting down, *before* claiming anything, so the
        redelivery OpenAI makes after our 503 is still accepted (elsewhere or later).

        One SIP call can announce itself on both APIs (a Realtime and a Live webhook, with
        unrelated ids). The routed graph's engine decides which one we act on; the other is
        answered 2xx and left alone -- never rejected, since a reject would end the call.
        Calls routed to a rejection are rejected on whichever API asks: the first decision
        wins and a second one just finds it made.
        """
        if self.draining:
            # The answered leg of a call we placed is still taken: the drain lets it finish.
            bridged = await self.outbound_intake(call) if self.outbound_intake else None
            if bridged is None:
                raise Draining()
            return bridged
        if not await self.registry.claim_delivery(call.webhook_id):
            log.info("duplicate delivery ignored", extra={"call_id": call.call_id})
            self.metrics.duplicate_delivery()
            return "duplicate"
        if self.outbound_intake is not None:
            bridged = await self.outbound_intake(call)
            if bridged is not None:
                return bridged
        config = self._config.current
        info = self._routing_info(call)
        route = config.route(info)
        if route.graph is not None and route.graph.engine != call.engine:
            log.info(
                "%s webhook for graph %s ignored: the graph runs on %s",
                call.engine,
                route.graph.name,
                route.graph.engine,
                extra={"call_id": call.call_id, "event": call.event_type},
            )
            self.metrics.webhook_other_engine(call.engine)
            return "other_engine"
        if call.engine not in self._engines:
            log.error("no %s engine configured", call.engine, extra={"call_id": call.call_id})
            self.metrics.webhook_other_engine(call.engine)
            return "other_engine"
        if not await self.registry.claim_call(call.claim_key):
            log.info("duplicate call ignored", extra={"call_id": call.call_id})
            self.metrics.duplicate_delivery()
            return "duplicate"
        record = CallRecord(
            call_id=call.call_id,
            engine=call.engine,
            caller=call.caller,
            dialed=call.dialed,
            twilio_call_sid=call.twilio_call_sid,
            media_security=call.sip_media_security,
            sip_headers=[[name, value] for name, value in call.sip_headers],
        )
        if received is not None:  # the ring deadline counts from the webhook's arrival
            record.created_mono = received
        await self.registry.put(record)
        if call.twilio_call_sid:
            await self.registry.link_call_sid(call.twilio_call_sid, call.call_id)
        self._ended[call.call_id] = asyncio.Event()
        self._tasks[call.call_id] = asyncio.create_task(
            self._call_task(record, call, Routed(config, info, route)),
            name=f"call:{call.call_id}",
        )
        return "started"

    async def _call_task(self, record: CallRecord, call: IncomingCall, routed: Routed) -> None:
        bind_call(call_id=record.call_id)
        try:
            reason, hangup = await self._lifecycle(record, call, routed)
        except asyncio.CancelledError:
            raise  # an external end() owns finalisation
        except Exception:
            log.exception("call task failed", extra={"call_id": record.call_id})
            reason, hangup = "internal_error", True
        if record.transfer_target is not None:  # whatever closed it, the transfer did it
            reason, hangup = "transferred", False
        await self.end(record.call_id, reason, hangup=hangup)

    async def _lifecycle(
        self, record: CallRecord, call: IncomingCall, routed: Routed
    ) -> tuple[str, bool]:
        """Admit, accept, attach, run; returns (end reason, whether to hang up)."""
        deadline = record.created_mono + self._settings.ring_deadline_s
        info, route = routed.info, routed.route
        engine = self._engines[call.engine]
        record.route = route.route_name
        record.config_hash = routed.config.config_hash
        recorder = self._recordings.start(record, call, route.graph.name if route.graph else "")
        if route.graph is None:
            code = route.reject_sip_code or SIP_DECLINE
            self.metrics.admission_rejected("route")
            return await self._reject(record, code, deadline, "rejected:route")
        for precheck in self.prechecks:
            code = await precheck(call)
            if code is not None:
                self.metrics.admission_rejected("precheck")
                return await self._reject(record, code, deadline, "rejected:precheck")
        graph = route.graph
        record.graph = graph.name
        bind_call(graph=graph.name)
        built = graph.build(info)
        try:
            admitted = await self.registry.acquire_slot(
                record.call_id, graph.name, built.limits.max_concurrent
            )
        except RegistryUnavailable:
            log.error("registry unavailable: rejecting", extra={"call_id": record.call_id})
            self.metrics.admission_rejected("registry")
            return await self._reject(record, SIP_UNAVAILABLE, deadline, "rejected:registry")
        if not admitted:
            log.warning("over capacity, rejecting", extra={"call_id": record.call_id})
            self.metrics.admission_rejected("capacity")
            return await self._reject(record, SIP_BUSY, deadline, "rejected:capacity")

        handle = self._make_handle(record.call_id)
        context = CallToolContext(call=info, graph=graph.name, controls=handle)
        refused = await self._accept(record, engine, built, context, deadline)
        if refused is not None:
            return refused
        record.transition(CallState.ACTIVE)
        self.metrics.accept_latency(time.monotonic() - record.created_mono)
        self.metrics.call_started(graph.name, record.call_id)
        # Shared at once (not at the next lease renewal): if this instance dies now, a
        # survivor knows the call's graph and version and can carry it on.
        await self.registry.put(record)
        log.info(
            "call accepted",
            extra={
                "call_id": record.call_id,
                "graph": graph.name,
                "route": route.route_name,
                "engine": engine.name,
            },
        )
        session = self._new_session(record, built, context, handle, engine, recorder)
        return await self._run_session(record, built, session)
