"""The Twilio side of a call: admission before dialing, and CallSid statuses -> the end path.

A Twilio number's call reaches us twice: first as Twilio's voice webhook (we answer TwiML
that dials OpenAI's SIP connector), then as OpenAI's ``realtime.call.incoming`` carrying the
same CallSid in ``X-Twilio-CallSid``. Twilio's status callbacks can overtake that webhook (the
caller hangs up while the INVITE is in flight), so terminal statuses are remembered for a
few minutes and a late webhook's call is rejected (:meth:`TwilioCalls.precheck`) instead of
accepted into a call nobody is on. Both the CallSid links and that memory are the call
registry's, so they are shared when several instances share Redis.

Which SID ``X-Twilio-CallSid`` carries (the caller's leg or the ``<Dial>`` child leg) is
Twilio's business, so we put the caller's-leg SID in our own ``X-Callserver-CallSid`` header
too and match callbacks on every SID they name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.records import CallRecord
from callserver.calls.registry import CallRegistry, RegistryUnavailable
from callserver.calls.status_memory import StatusMemory
from callserver.graph import RouteResult
from callserver.graph.context import CallInfo
from callserver.webhooks.openai import IncomingCall
from callserver.webhooks.twilio import TERMINAL_STATUSES
from callserver.webhooks.twiml import RejectReason, header_items

log = logging.getLogger(__name__)

__all__ = ["Admission", "StatusMemory", "TwilioCalls", "dial_refusal"]

PARENT_SID_HEADER = "X-Callserver-CallSid"
ROUTE_HEADER = "X-Callserver-Route"
GRAPH_HEADER = "X-Callserver-Graph"
DIALED_HEADER = "X-Callserver-Dialed"
OWN_HEADER_PREFIX = "x-callserver-"

SIP_DECLINE = 603
SIP_UNAVAILABLE = 503
BUSY_SIP_CODES = frozenset({480, 486, 503, 600})
"""Reject-route codes that mean "try later": Twilio plays busy. Anything else: rejected."""

NEVER_CONNECTED_STATUSES = frozenset({"failed", "no-answer"})
"""``<Dial action>`` statuses that, when no live call of ours was ended by them, mean the leg
to OpenAI never connected (``busy`` always means that)."""


def dial_refusal(
    dial_status: str, sip_code: str | None, outcome: str | None
) -> RejectReason | None:
    """What a caller whose SIP leg was refused (e.g. 486 when the instance that got OpenAI's
    webhook was full) hears: ``busy``, or ``rejected`` for a final refusal such as 403/603.

    ``outcome`` is what :meth:`TwilioCalls.on_status` did with the action (None if it could
    not tell). None when the leg connected (a live call of ours ended) or the caller left:
    the call is over, hang up. The caller is still on the line, waiting (``answerOnBridge``).
    """
    never_connected = outcome in ("remembered", "duplicate")
    if not (dial_status == "busy" or (dial_status in NEVER_CONNECTED_STATUSES and never_connected)):
        return None
    code = int(sip_code) if sip_code and sip_code.isdigit() else None
    if code is not None and code >= 400 and code not in BUSY_SIP_CODES:
        return "rejected"
    return "busy"


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    """Whether to dial OpenAI for a Twilio call. ``reject`` is None to dial."""

    route: RouteResult | None
    """Set (with a graph) whenever ``reject`` is None."""
    reject: RejectReason | None
    """``busy`` or ``rejected`` (TwiML ``<Reject reason>``)."""
    reason: str
    """Why, for logs: ``ok``, ``draining``, ``full``, ``graph_full``, ``route:<code>``."""


class TwilioCalls:
    """Maps Twilio CallSids to our calls; ends calls whose Twilio leg is over.

    The CallSid links and the remembered terminal statuses live in the call registry: in
    process by default, in Redis with several instances, so a status callback can land on
    any instance, whichever one accepted (or will accept) the call.
    """

    def __init__(
        self, *, manager: CallManager, config: ConfigSource, max_calls: int | None
    ) -> None:
        self._manager = manager
        self._config = config
        self._max_calls = max_calls
        """Admission cap checked before dialing; None: none applies here (see ``admit``)."""

    @property
    def _registry(self) -> CallRegistry:
        return self._manager.registry

    def install(self) -> None:
        """Hook into the manager: the late-webhook precheck."""
        self._manager.prechecks.append(self.precheck)

    # ---- before dialing -------------------------------------------------------------------

    async def admit(self, info: CallInfo) -> Admission:
        """Decide before opening a SIP leg: a refused call never rings at OpenAI.

        Capacity is only *checked* here; the OpenAI webhook path takes the slot, so a call
        admitted here can still be refused there if others won the race (the caller then
        hears the refusal from the Dial action).
        """
        if self._manager.draining:
            return Admission(None, "busy", "draining")
        route = self._config.current.route(info)
        if route.graph is None:
            code = route.reject_sip_code or SIP_DECLINE
            kind: RejectReason = "busy" if code in BUSY_SIP_CODES else "rejected"
            return Admission(route, kind, f"route:{code}")
        live = await self._registry.live_calls()
        if self._max_calls is not None and len(live) >= self._max_calls:
            return Admission(route, "busy", "full")
        limit = route.graph.limits.max_concurrent
        if limit is not None and sum(1 for r in live if r.graph == route.graph.name) >= limit:
            return Admission(route, "busy", "graph_full")
        return Admission(route, None, "ok")

    def sip_headers(self, route: RouteResult, call_sid: str, dialed: str) -> list[tuple[str, str]]:
        """Context for the OpenAI webhook: ours first (they matter most when space runs
        out), then the route's configured per-number values (e.g. ``X-Tenant``)."""
        headers = [(PARENT_SID_HEADER, call_sid), (ROUTE_HEADER, route.route_name)]
        if route.graph is not None:
            headers.append((GRAPH_HEADER, route.graph.name))
        headers.append((DIALED_HEADER, dialed))
        configured = getattr(route, "sip_headers", None) or {}
        for name, value in header_items(configured):
            if name.lower().startswith(OWN_HEADER_PREFIX):
                log.warning("configured SIP header %s dropped: X-Callserver-* is ours", name)
                continue
            headers.append((name, value))
        return headers

    # ---- status callbacks -----------------------------------------------------------------

    async def on_status(self, sids: Sequence[str], status: str, *, final: bool = False) -> str:
        """Apply a Twilio status for the call any of ``sids`` names.

        ``final``: the caller is gone whatever ``status`` says (the Dial action). Returns
        what happened, for the response and the logs: ``ended`` (we ended a live call),
        ``remembered`` (no live call yet: a late webhook will be rejected), ``duplicate``
        (seen before: nothing changes), ``recorded`` (non-terminal status on a live call),
        ``ignored`` (non-terminal, no live call). Raises RegistryUnavailable, having
        remembered nothing, so Twilio's retry is acted on.
        """
        registry = self._registry
        terminal = final or status in TERMINAL_STATUSES
        if not terminal:
            for sid in sids:
                if await registry.status_of(sid):
                    return "ignored"  # a late "ringing" after "completed"
            record = await self._find(sids)
            if record is None or not record.live:
                return "ignored"
            record.twilio_status = status
            return "recorded"
        # Remember first, then look the call up: the webhook side links first, then checks
        # (precheck), so whichever comes second sees the other's write.
        fresh: list[str] = []
        try:
            for sid in sids:
                if await registry.remember_status(sid, status):
                    fresh.append(sid)
            if not fresh:
                return "duplicate"
            ended, record = await self._end(sids, status)
        except RegistryUnavailable:
            for sid in fresh:  # let Twilio's retry (or the Dial action) try again
                await registry.forget_status(sid)
            raise
        log.info(
            "twilio status %s: %s",
            status,
            "call ended" if ended else "no live call (remembered)",
            extra={"call_sid": sids[0], "call_id": record.call_id if record else None},
        )
        return "ended" if ended else "remembered"

    async def _end(self, sids: Sequence[str], status: str) -> tuple[bool, CallRecord | None]:
        """End every live call ``sids`` name; (whether one was ended, the record found)."""
        reason = f"twilio:{status}"
        record = await self._find(sids)
        if record is not None and record.live:
            record.twilio_status = status
        ended = False
        for sid in sids:
            # The registry knows where the call lives; ending is idempotent, so a call named
            # by two SIDs is still ended once.
            ended = await self._manager.end_by_call_sid(sid, reason) or ended
        return ended, record

    async def _find(self, sids: Iterable[str]) -> CallRecord | None:
        for sid in sids:
            record = await self._registry.by_call_sid(sid)
            if record is not None:
                return record
        return None

    # ---- the OpenAI webhook side ----------------------------------------------------------

    async def precheck(self, call: IncomingCall) -> int | None:
        """Reject (603) a call whose Twilio leg already ended; link its extra SID first.

        Runs in the manager before admission. The link is written before the statuses are
        read, and a status callback remembers before it looks the call up; so however the
        two interleave (on one instance or two), one of them sees the other: the call is
        either rejected here or found and ended there.
        """
        parent = _header(call.sip_headers, PARENT_SID_HEADER)
        sids = [s for s in (call.twilio_call_sid, parent) if s]
        registry = self._registry
        if parent and parent != call.twilio_call_sid:
            await registry.link_call_sid(parent, call.call_id)
        try:
            for sid in sids:
                status = await registry.status_of(sid)
                if status is not None:
                    log.info(
                        "rejecting call: its Twilio leg already ended (%s)",
                        status,
                        extra={"call_id": call.call_id, "call_sid": sid},
                    )
                    return SIP_DECLINE
        except RegistryUnavailable:
            log.error("registry unavailable: cannot tell if the Twilio caller is still there")
            return SIP_UNAVAILABLE
        return None


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    value = next((v for k, v in headers if k.lower() == lname), None)
    if value is None or not value.isalnum() or len(value) > 64:
        return None  # untrusted SIP input: only a SID-shaped value is used
    return value
