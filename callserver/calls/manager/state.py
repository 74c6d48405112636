"""What the call manager's parts share: its state, and the steps more than one part takes.

The manager is one object (``CallManager``, in ``__init__``) made of parts that each hold
one side of a call's life: intake, placing outbound calls, moving calls between instances,
ending, shutdown. They share the tables kept here; ``end`` and ``transfer`` (``ending.py``)
are the one way any part ends or transfers a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from callserver.calls.handle import CallHandle
from callserver.calls.outbound import OutboundPlan
from callserver.calls.recordings import CallRecordings
from callserver.calls.records import CallRecord, CallState
from callserver.calls.registry import CallRegistry
from callserver.calls.session import CallSession, SignalListener
from callserver.engines.base import Engine, Takeover
from callserver.engines.errors import CallGone, ControlError, DecidedElsewhere
from callserver.engines.rest import RestObserver
from callserver.graph.context import CallInfo, CallToolContext
from callserver.graph.routes import RouteResult
from callserver.graph.spec import BuiltGraph, Config
from callserver.metrics import Metrics
from callserver.records.recorder import CallRecorder, RecorderFactory
from callserver.settings import Settings
from callserver.webhooks.openai import IncomingCall

if TYPE_CHECKING:
    from callserver.calls.coordination import Coordinator
    from callserver.calls.moves import CallMoves

log = logging.getLogger("callserver.calls.manager")

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
class Routed:
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


class ManagerState:
    """The manager's tables and shared steps; see the module docstring."""

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

    @property
    def engines(self) -> Mapping[str, Engine]:
        """The engines calls run on, by name."""
        return self._engines

    @property
    def recorder_factory(self) -> RecorderFactory | None:
        return self._recordings.factory

    @property
    def observe_rest(self) -> RestObserver:
        """The engines' REST observer while recording: one ``rest`` entry per attempt."""
        return self._recordings.observe_rest

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

    def session(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    async def wait_ended(self, call_id: str, timeout: float) -> None:
        event = self._ended.get(call_id)
        if event is not None:
            await asyncio.wait_for(event.wait(), timeout)

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

    # ---- implemented by ``ending.py`` -----------------------------------------------------

    def spawn_end(self, call_id: str, reason: str, hangup: bool = True) -> None:
        raise NotImplementedError

    async def end(self, call_id: str, reason: str, *, hangup: bool = True) -> bool:
        raise NotImplementedError

    async def transfer(self, call_id: str, target_uri: str, *, reason: str = "transferred") -> None:
        raise NotImplementedError
