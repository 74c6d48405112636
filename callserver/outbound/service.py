"""The outbound service: places one call (admin API, CLI, campaigns) through a dialer.

For each call it resolves the graph's dialer and caller number, refuses numbers on the
do-not-call list and calls beyond the outbound share of the call cap (nothing is dialed
then), prepares the call's record and voicemail watch, and hands it to the call manager,
whose one entry point (``start_outbound``) runs it like any call. It also takes the
bridged legs of Twilio-placed calls from the manager's intake (``intake``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.outbound import END_REASONS, OutboundDialer, OutboundPlan, OutboundRefused
from callserver.calls.records import CallRecord
from callserver.graph.context import CallInfo
from callserver.graph.spec import GraphSpec
from callserver.outbound.bridge import BridgeBoard
from callserver.outbound.dnc import DoNotCall
from callserver.outbound.intake import BridgeIntake
from callserver.outbound.request import CallRequest, RequestError
from callserver.outbound.twilio_answer import TwilioOutbound
from callserver.outbound.voicemail import VoicemailWatch
from callserver.settings import Settings
from callserver.webhooks.twilio import TwilioSignature

if TYPE_CHECKING:
    from callserver.outbound.campaigns.service import Campaigns

log = logging.getLogger(__name__)

SAY_WAIT_S = 5.0
TWILIO_END_REASONS = tuple(
    f"twilio:{s}" for s in ("completed", "busy", "no-answer", "failed", "canceled")
)
DIALER_SETUP = {
    "live": "set CALLSERVER_SIP_TRUNK_URL, CALLSERVER_SIP_TRUNK_USERNAME and "
    "CALLSERVER_SIP_TRUNK_PASSWORD",
    "twilio": "set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, CALLSERVER_PUBLIC_URL, "
    "CALLSERVER_OUTBOUND_SIGNING_KEY and OPENAI_PROJECT_ID (or CALLSERVER_SIP_URI)",
}


class Blocked(Exception):
    """The number is on a do-not-call list: not dialed."""


def new_attempt_id() -> str:
    return f"out_{secrets.token_hex(12)}"


@dataclasses.dataclass(slots=True)
class Dialed:
    """A call handed to the manager: its record, its plan, and its end."""

    record: CallRecord
    plan: OutboundPlan
    ended: asyncio.Future[CallRecord]


class OutboundService:
    """See the module docstring; one per app, built in the lifespan."""

    def __init__(
        self,
        *,
        settings: Settings,
        manager: CallManager,
        config: ConfigSource,
        dialers: Mapping[str, OutboundDialer],
        board: BridgeBoard,
        intake: BridgeIntake,
        dnc: DoNotCall,
        outbound_cap: int,
    ) -> None:
        self._settings = settings
        self.manager = manager
        self._config = config
        self.dialers = dict(dialers)
        self.board = board
        self.intake = intake
        self.dnc = dnc
        self.outbound_cap = outbound_cap
        """How many outbound calls this instance carries at most (the inbound share is
        kept free of them)."""
        self._active: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self.twilio: TwilioOutbound | None = None
        """Answers Twilio's requests about calls the Twilio dialer placed (when on)."""
        self.twilio_signature: TwilioSignature | None = None
        self.campaigns: Campaigns | None = None
        """Set by the lifespan (``setup.build_campaigns``)."""
        manager.metrics.allow_end_reasons([*END_REASONS, *TWILIO_END_REASONS])

    # ---- one call ---------------------------------------------------------------------------

    @property
    def graphs(self) -> Mapping[str, GraphSpec]:
        return self._config.current.graphs

    @property
    def create_timeout_s(self) -> float:
        """How long a dialer's one request may take."""
        return self._settings.outbound_create_timeout_s

    @property
    def active(self) -> int:
        return len(self._active)

    def has_room(self) -> bool:
        return len(self._active) < self.outbound_cap

    async def wait_room(self, timeout_s: float) -> None:
        """Until an outbound call of this instance ends (or ``timeout_s``)."""
        self._room.clear()
        if self.has_room():
            return
        try:
            await asyncio.wait_for(self._room.wait(), timeout_s)
        except TimeoutError:
            pass

    def dialer_for(self, graph: GraphSpec, wanted: str | None) -> OutboundDialer:
        outbound = graph.outbound
        name = wanted or (outbound.dialer if outbound else None)
        name = name or ("live" if graph.engine == "live" else "twilio")
        if name == "live" and graph.engine != "live":
            raise RequestError(
                "dialer", f"graph {graph.name!r} runs on realtime: only Twilio dials for it"
            )
        dialer = self.dialers.get(name)
        if dialer is None:
            raise RequestError(
                "dialer",
                f"the {name} dialer is not configured on this server: {DIALER_SETUP[name]}",
            )
        return dialer

    def caller_for(self, graph: GraphSpec, dialer: OutboundDialer, wanted: str | None) -> str:
        settings = self._settings
        configured = graph.outbound.caller_number if graph.outbound else None
        fallback = settings.twilio_from if dialer.name == "twilio" else None
        number = wanted or configured or fallback or settings.caller_number
        if number is None:
            source = (
                "CALLSERVER_TWILIO_FROM" if dialer.name == "twilio" else "CALLSERVER_CALLER_NUMBER"
            )
            raise RequestError(
                "from", f"no caller number: pass from, set outbound.caller_number or {source}"
            )
        return number

    def check(self, request: CallRequest) -> tuple[GraphSpec, OutboundDialer, str]:
        """Everything about a request that can be known before dialing; RequestError."""
        graph = self.graphs.get(request.graph)
        if graph is None:
            raise RequestError("graph", f"no graph named {request.graph!r}")
        dialer = self.dialer_for(graph, request.dialer)
        return graph, dialer, self.caller_for(graph, dialer, request.from_)

    async def place(
        self,
        request: CallRequest,
        *,
        campaign: Mapping[str, Any] | None = None,
        dnc: frozenset[str] = frozenset(),
    ) -> Dialed:
        """Hand one call to the manager. Raises RequestError, Blocked (do-not-call) or
        OutboundRefused (no room: capacity, draining); in each case nothing was dialed."""
        graph, dialer, caller = self.check(request)
        if self.dnc.blocked(request.to, dnc):
            raise Blocked(request.to)
        if not self.has_room():
            raise OutboundRefused("capacity")
        outbound = graph.outbound
        attempt_id = new_attempt_id()
        record = CallRecord(
            call_id=attempt_id,
            engine=graph.engine,
            caller=caller,
            dialed=request.to,
            direction="outbound",
            outbound={
                "id": attempt_id,
                "to": request.to,
                "from": caller,
                "dialer": dialer.name,
                "state": "dialing",
                "outcome": None,
                "on_voicemail": outbound.on_voicemail if outbound else "hangup",
                "machine_detection": outbound.machine_detection if outbound else None,
                "ring_timeout_s": outbound.ring_timeout if outbound else 30.0,
                **dict(campaign or {}),
            },
        )
        info = CallInfo(
            call_id=attempt_id, caller=caller, dialed=request.to, variables=request.variables
        )
        watch = VoicemailWatch(
            record,
            action=outbound.on_voicemail if outbound else "hangup",
            wait_s=outbound.voicemail_detection if outbound else 6.0,
            message=graph.build(info).leave_message
            if outbound and outbound.leave_message
            else None,
            end=lambda reason, hangup: self.manager.spawn_end(attempt_id, reason, hangup),
            say=lambda text: self._say(attempt_id, text),
        )
        ring = outbound.ring_timeout if outbound else 30.0
        if dialer.name == "twilio":
            ring += 15.0  # Twilio's own Timeout reports no-answer first
        plan = OutboundPlan(
            record=record,
            graph=graph,
            info=info,
            dialer=dialer,
            config_hash=self._config.current.config_hash,
            ring_timeout_s=ring,
            listeners=[watch.on_signal],
            on_answered=[lambda: watch.answered((record.outbound or {}).get("twilio_answered_by"))],
        )
        self._active.add(attempt_id)
        try:
            await self.manager.start_outbound(plan)
        except BaseException:
            self._active.discard(attempt_id)
            self._room.set()
            raise
        ended: asyncio.Future[CallRecord] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._follow(record, watch, ended), name=f"follow:{attempt_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Dialed(record, plan, ended)

    async def _follow(
        self, record: CallRecord, watch: VoicemailWatch, ended: asyncio.Future[CallRecord]
    ) -> None:
        try:
            await self.manager.wait_ended(record.call_id, self._settings.max_call_duration_s + 3600)
        except TimeoutError:
            log.error("outbound call never ended", extra={"call_id": record.call_id})
        finally:
            await watch.close()
            self._active.discard(record.call_id)
            self._room.set()
            if not ended.done():
                ended.set_result(record)

    async def _say(self, call_id: str, text: str) -> bool:
        """Make the call's agent speak (once its session is attached)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SAY_WAIT_S
        while loop.time() < deadline:
            session = self.manager.session(call_id)
            if session is not None and session.session is not None:
                await session.say(text)
                return True
            await asyncio.sleep(0.05)
        return False

    async def aclose(self) -> None:
        """After the manager's drain: every call has ended, so the followers finish."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.intake.aclose()
        await self.board.aclose()
        for dialer in self.dialers.values():
            close = getattr(dialer, "aclose", None)
            if close is not None:
                await close()
