"""The call-lifecycle manager: from a verified webhook to a finalised call record.

Every call is a task owned by the manager. Every way a call can end (the caller hangs up,
an agent ends or transfers it, max duration, an admin or Twilio request, shutdown) goes
through :meth:`CallManager.end`, which is idempotent: it hangs up at OpenAI when we are the
ones ending a live call, stops the session, finalises the record and frees the slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from callserver.calls import outbound as outbound_calls
from callserver.calls.handle import CallHandle
from callserver.calls.outbound import DialFailed, OutboundPlan, OutboundRefused
from callserver.calls.recordings import CallRecordings
from callserver.calls.records import CallRecord, CallState
from callserver.calls.registry import CallRegistry, RegistryUnavailable
from callserver.calls.session import NOT_ATTACHED, CallSession, SignalListener
from callserver.engines.base import Engine, PostCallJob, Takeover
from callserver.engines.errors import CallGone, ControlError, DecidedElsewhere
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.routes import RouteResult
from callserver.graph.spec import BuiltGraph, Config, GraphSpec
from callserver.logs import bind_call
from callserver.metrics import Metrics
from callserver.records.recorder import NULL_RECORDER, CallRecorder, RecorderFactory
from callserver.settings import Settings
from callserver.webhooks.openai import IncomingCall

if TYPE_CHECKING:
    from callserver.calls.coordination import Coordinator
    from callserver.calls.moves import CallMoves

log = logging.getLogger(__name__)

SIP_BUSY = 486
SIP_DECLINE = 603
SIP_UNAVAILABLE = 503
HANGUP_TIMEOUT_S = 5.0
TASK_STOP_TIMEOUT_S = 5.0
ABORT_FINALIZE_S = 2.0
"""After an abort's bound: how long a cancelled end may take to write its record."""


class ConfigSource(Protocol):
    """Where the current config comes from; reload swaps what ``current`` returns."""

    @property
    def current(self) -> Any: ...


class Draining(Exception):
    """The instance takes no new calls (shutdown in progress)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Routed:
    """Where a webhook was routed: decided once, at intake, from one config snapshot."""

    config: Config
    info: CallInfo
    route: RouteResult


EndListener = Callable[[CallRecord], None]
PreCheck = Callable[[IncomingCall], Awaitable[int | None]]
"""Runs before a call is admitted; returns a SIP code to reject it with, or None."""
OutboundIntake = Callable[[IncomingCall], Awaitable[str | None]]
"""Looks at every incoming call first: the outcome (e.g. ``bridged``) when it is the bridged
leg of one of our outbound calls (or a forged one, refused), None for an ordinary call."""


class CallManager:
    """Owns every call task; the only writer of call state."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: CallRegistry,
        engines: Mapping[str, Engine],
        config: ConfigSource,
        metrics: Metrics | None = None,
        recorder_factory: RecorderFactory | None = None,
    ) -> None:
        self._settings = settings
        self.metrics = metrics or Metrics()
        self.registry = registry
        self._engines = dict(engines)
        self._config = config
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._aux: set[asyncio.Task[Any]] = set()
        self._sessions: dict[str, CallSession] = {}
        self._handles: dict[str, CallHandle] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self.draining = False
        self.end_listeners: list[EndListener] = []
        self.prechecks: list[PreCheck] = []
        self._drain_task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        """Set at shutdown: post-call jobs in worker threads stop at their next step."""
        self.aborting = False
        """Set by :meth:`abort` (a second shutdown signal): drains stop waiting for calls."""
        self._recordings = CallRecordings(recorder_factory)
        self.coordinator: Coordinator | None = None
        """Set when calls are shared with other instances (Redis): routes ends to owners."""
        self.mover: CallMoves | None = None
        """Set with Redis: hands live calls to a peer at shutdown, adopts orphans."""
        self.outbound_intake: OutboundIntake | None = None
        """Set by the outbound layer: bridged legs of outbound calls (Twilio) go there."""
        self._plans: dict[str, OutboundPlan] = {}

    # ---- intake ---------------------------------------------------------------------------

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
            self._call_task(record, call, _Routed(config, info, route)),
            name=f"call:{call.call_id}",
        )
        return "started"

    # ---- the call task --------------------------------------------------------------------

    async def _call_task(self, record: CallRecord, call: IncomingCall, routed: _Routed) -> None:
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
        self, record: CallRecord, call: IncomingCall, routed: _Routed
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

    def _make_handle(self, call_id: str) -> CallHandle:
        handle = CallHandle(
            call_id,
            schedule_end=lambda reason, hangup: self.spawn_end(call_id, reason, hangup),
            transfer=lambda target, reason: self.transfer(call_id, target, reason=reason),
        )
        self._handles[call_id] = handle
        return handle

    async def _accept(
        self,
        record: CallRecord,
        engine: Engine,
        built: BuiltGraph,
        context: CallToolContext,
        deadline: float,
    ) -> tuple[str, bool] | None:
        """Accept the ringing call; None once accepted, else (end reason, hang up)."""
        record.transition(CallState.ACCEPTING)
        body = await engine.accept_body(built, context)
        record.accept_sent_mono = time.monotonic()
        try:
            await engine.control.accept(record.engine_id, body, deadline=deadline)
        except CallGone:
            log.info("caller gone before accept", extra={"call_id": record.call_id})
            return "caller_gone", False
        except DecidedElsewhere:
            log.warning(
                "call decided elsewhere (another accept or reject won)",
                extra={"call_id": record.call_id},
            )
            return "decided_elsewhere", False
        except ControlError as exc:
            log.error("accept failed: %s", exc.detail, extra={"call_id": record.call_id})
            return "accept_failed", False
        return None

    # ---- outbound calls ---------------------------------------------------------------------

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

    def _new_session(
        self,
        record: CallRecord,
        built: BuiltGraph,
        context: CallToolContext,
        handle: CallHandle,
        engine: Engine,
        recorder: CallRecorder,
        takeover: Takeover | None = None,
        listeners: list[SignalListener] | None = None,
    ) -> CallSession:
        session = CallSession(
            record=record,
            built=built,
            context=context,
            engine=engine,
            listeners=[handle.on_signal, *(listeners or ())],
            metrics=self.metrics,
            recorder=recorder,
            on_idle=lambda: self.spawn_end(record.call_id, "idle_timeout", True),
            controls=handle,
            takeover=takeover,
        )
        self._sessions[record.call_id] = session
        return session

    async def _run_session(
        self, record: CallRecord, built: BuiltGraph, session: CallSession
    ) -> tuple[str, bool]:
        """Run an attached call's session under its max duration (from the call's start)."""
        max_duration = min(built.limits.max_duration_s, self._settings.max_call_duration_s)
        remaining = max_duration - (time.monotonic() - record.created_mono)
        # At the limit the call ends through the one end path like any hangup we decide:
        # hang up while the session still listens (so the engine's last word is heard).
        timer = asyncio.get_running_loop().call_later(
            max(remaining, 0.0), self.spawn_end, record.call_id, "max_duration", True
        )
        try:
            stopped = await session.run()
        finally:
            timer.cancel()
        return stopped.reason, stopped.hangup

    # ---- calls that move between instances (``calls/moves.py`` drives these) ------------------

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

    @property
    def engines(self) -> Mapping[str, Engine]:
        """The engines calls run on, by name."""
        return self._engines

    @property
    def recorder_factory(self) -> RecorderFactory | None:
        return self._recordings.factory

    def observe_rest(
        self,
        call_id: str,
        action: str,
        body: dict[str, Any] | None,
        status: int | None,
        error: str | None,
    ) -> None:
        """The engines' REST observer while recording: one ``rest`` entry per attempt."""
        self._recordings.observe_rest(call_id, action, body, status, error)

    def _routing_info(self, call: IncomingCall) -> CallInfo:
        """What routing and placeholders see. A call that came in through our own Twilio
        TwiML was dialed to the project's SIP user, so the number the caller dialed rides in
        ``X-Callserver-Dialed``; it is honoured only when the Twilio integration is on."""
        info = call.info()
        if self._settings.twilio_auth_token is not None:
            forwarded = info.header("X-Callserver-Dialed")
            if forwarded:
                info = dataclasses.replace(info, dialed=forwarded)
        return info

    def _engine(self, record: CallRecord) -> Engine:
        return self._engines[record.engine]

    async def _reject(
        self, record: CallRecord, code: int, deadline: float, reason: str
    ) -> tuple[str, bool]:
        try:
            await self._engine(record).control.reject(record.engine_id, code, deadline=deadline)
        except CallGone:
            return "caller_gone", False
        except DecidedElsewhere:
            return "decided_elsewhere", False
        except ControlError as exc:
            log.error("reject failed: %s", exc.detail, extra={"call_id": record.call_id})
        return reason, False

    # ---- ending ---------------------------------------------------------------------------

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

    async def wait_ended(self, call_id: str, timeout: float) -> None:
        event = self._ended.get(call_id)
        if event is not None:
            await asyncio.wait_for(event.wait(), timeout)

    def session(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    # ---- shutdown -------------------------------------------------------------------------

    def begin_drain(self) -> None:
        if not self.draining:
            log.warning("draining: new calls are refused with 503")
        self.draining = True
        self.metrics.set_draining(True)

    def start_drain(self, timeout_s: float) -> None:
        """Begin a drain in the background (admin API): the manager owns the task."""
        if self._drain_task is None:
            self.begin_drain()
            self._drain_task = asyncio.create_task(self._drain_calls(timeout_s), name="drain")

    async def drain(self, timeout_s: float) -> None:
        """Stop taking calls, let live ones finish for ``timeout_s``, then hang them up."""
        self.begin_drain()
        if self.aborting:
            timeout_s = 0.0
        if self.mover is not None and not self.aborting:
            await self.mover.hand_over_all()  # what a peer takes does not wait, nor hang up
        if self._drain_task is not None:
            await asyncio.wait({self._drain_task}, timeout=timeout_s + TASK_STOP_TIMEOUT_S)
            if not self._drain_task.done():
                self._drain_task.cancel()
                await asyncio.gather(self._drain_task, return_exceptions=True)
        await self._drain_calls(timeout_s)
        await self._stop_aux()

    async def _drain_calls(self, timeout_s: float) -> None:
        """Let live calls finish for ``timeout_s``, then hang up the rest."""
        if self._tasks and timeout_s > 0:
            await asyncio.wait(list(self._tasks.values()), timeout=timeout_s)
        if self.aborting:
            return  # abort() ends the calls, within its own bound
        remaining = list(self._tasks)
        if remaining:
            log.warning("drain timeout: hanging up %d call(s)", len(remaining))
            await asyncio.gather(
                *(self.end(call_id, "shutdown", hangup=True) for call_id in remaining),
                return_exceptions=True,
            )

    async def abort(self, timeout_s: float) -> bool:
        """End every live call now (a second shutdown signal): no more waiting for calls.

        Each call goes through :meth:`end` (hang up at OpenAI, record finalised, post-call
        event handed to the outbox). Ends still running after ``timeout_s`` are cancelled:
        cancelling one stops its wait for OpenAI but still finalises the record. Returns
        True if every call was ended within the bound.
        """
        self.begin_drain()
        self.aborting = True
        ends = [
            asyncio.create_task(self.end(call_id, "shutdown", hangup=True), name=f"abort:{call_id}")
            for call_id in list(self._tasks)
        ]
        if not ends:
            return True
        _, pending = await asyncio.wait(ends, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.error("abort: %d call(s) not ended in %.1fs", len(pending), timeout_s)
            await asyncio.wait(pending, timeout=ABORT_FINALIZE_S)
            for task in pending:  # still not done: owned like any aux task from here
                if not task.done():
                    self._aux.add(task)
                    task.add_done_callback(self._aux.discard)
        return not pending

    async def _stop_aux(self) -> None:
        self._stopping.set()
        for task in list(self._aux):
            task.cancel()
        if self._aux:
            await asyncio.wait(self._aux, timeout=TASK_STOP_TIMEOUT_S)

    def _own(self, coro: Any, *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    @property
    def active_count(self) -> int:
        return len(self._tasks)

    def task_names(self) -> list[str]:
        """Names of every task the manager still owns (tests assert this empties)."""
        return [t.get_name() for t in self._tasks.values()] + [
            t.get_name() for t in self._aux if not t.done()
        ]
