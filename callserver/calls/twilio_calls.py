"""The Twilio side of a call: admission before dialing, and CallSid statuses -> the end path.

A Twilio number's call reaches us twice: first as Twilio's voice webhook (we answer TwiML
that dials OpenAI's SIP connector), then as OpenAI's ``realtime.call.incoming`` carrying the
same CallSid in ``X-Twilio-CallSid``. Twilio's status callbacks can overtake that webhook (the
caller hangs up while the INVITE is in flight), so terminal statuses are remembered for a
few minutes and a late webhook's call is rejected (:meth:`TwilioCalls.precheck`) instead of
accepted into a call nobody is on.

Which SID ``X-Twilio-CallSid`` carries (the caller's leg or the ``<Dial>`` child leg) is
Twilio's business, so we put the caller's-leg SID in our own ``X-Callserver-CallSid`` header
too and match callbacks on every SID they name.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.records import CallRecord
from callserver.calls.registry import RegistryUnavailable
from callserver.graph import RouteResult
from callserver.graph.context import CallInfo
from callserver.webhooks.openai import IncomingCall
from callserver.webhooks.twilio import TERMINAL_STATUSES
from callserver.webhooks.twiml import RejectReason, header_items

log = logging.getLogger(__name__)

PARENT_SID_HEADER = "X-Callserver-CallSid"
ROUTE_HEADER = "X-Callserver-Route"
GRAPH_HEADER = "X-Callserver-Graph"
DIALED_HEADER = "X-Callserver-Dialed"
OWN_HEADER_PREFIX = "x-callserver-"

SIP_DECLINE = 603
BUSY_SIP_CODES = frozenset({480, 486, 503, 600})
"""Reject-route codes that mean "try later": Twilio plays busy. Anything else: rejected."""

NEVER_CONNECTED_STATUSES = frozenset({"failed", "no-answer"})
"""``<Dial action>`` statuses that, when no live call of ours was ended by them, mean the leg
to OpenAI never connected (``busy`` always means that)."""

DEFAULT_STATUS_TTL_S = 300.0
DEFAULT_MAX_REMEMBERED = 50_000


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


class StatusMemory:
    """Terminal statuses by SID, kept for ``ttl_s``; bounded so a flood cannot grow it."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_STATUS_TTL_S,
        max_items: int = DEFAULT_MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_items
        self._clock = clock
        self._items: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            _, (_, seen) = next(iter(self._items.items()))
            if now - seen < self._ttl and len(self._items) <= self._max:
                break
            self._items.popitem(last=False)

    def remember(self, sid: str, status: str) -> bool:
        """Record a terminal status; False if this SID already had one (first one wins)."""
        self._expire()
        if sid in self._items:
            return False
        self._items[sid] = (status, self._clock())
        self._expire()
        return True

    def forget(self, sid: str) -> None:
        """Undo :meth:`remember` (the status could not be acted on; a retry should be)."""
        self._items.pop(sid, None)

    def get(self, sid: str) -> str | None:
        self._expire()
        item = self._items.get(sid)
        return item[0] if item else None

    def __len__(self) -> int:
        self._expire()
        return len(self._items)


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
    """Maps Twilio CallSids to our calls; ends calls whose Twilio leg is over."""

    def __init__(
        self,
        *,
        manager: CallManager,
        config: ConfigSource,
        max_calls: int,
        status_ttl_s: float = DEFAULT_STATUS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self._config = config
        self._max_calls = max_calls
        self.statuses = StatusMemory(status_ttl_s, clock=clock)
        self._aliases: dict[str, str] = {}
        """Extra SIDs (our X-Callserver-CallSid) -> call_id, while the call is live."""
        self._alias_of_call: dict[str, list[str]] = {}

    def install(self) -> None:
        """Hook into the manager: the late-webhook precheck and alias clean-up."""
        self._manager.prechecks.append(self.precheck)
        self._manager.end_listeners.append(self.on_call_ended)

    # ---- before dialing -------------------------------------------------------------------

    async def admit(self, info: CallInfo) -> Admission:
        """Decide before opening a SIP leg: a refused call never rings at OpenAI.

        Capacity is only *checked* here; the OpenAI webhook path takes the slot, so a call
        admitted here can still be refused there if others won the race.
        """
        if self._manager.draining:
            return Admission(None, "busy", "draining")
        route = self._config.current.route(info)
        if route.graph is None:
            code = route.reject_sip_code or SIP_DECLINE
            kind: RejectReason = "busy" if code in BUSY_SIP_CODES else "rejected"
            return Admission(route, kind, f"route:{code}")
        live = await self._manager.registry.live_calls()
        if len(live) >= self._max_calls:
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
        ``ignored`` (non-terminal, no live call).
        """
        terminal = final or status in TERMINAL_STATUSES
        if not terminal:
            if any(self.statuses.get(sid) for sid in sids):
                return "ignored"  # a late "ringing" after "completed"
            record = await self._find(sids)
            if record is None or not record.live:
                return "ignored"
            record.twilio_status = status
            return "recorded"
        fresh = [sid for sid in sids if self.statuses.remember(sid, status)]
        if not fresh:
            return "duplicate"
        try:
            ended, record = await self._end(sids, status)
        except RegistryUnavailable:
            for sid in fresh:  # let Twilio's retry (or the Dial action) try again
                self.statuses.forget(sid)
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
            # Our alias names a call this instance admitted; the registry's CallSid link goes
            # through the manager's lookup (which knows where the call lives). Both are
            # idempotent, so a call named twice is still ended once.
            alias = self._aliases.get(sid)
            if alias is not None:
                ended = await self._manager.end(alias, reason, hangup=True) or ended
            ended = await self._manager.end_by_call_sid(sid, reason) or ended
        return ended, record

    async def _find(self, sids: Iterable[str]) -> CallRecord | None:
        for sid in sids:
            record = await self._manager.registry.by_call_sid(sid)
            if record is None and sid in self._aliases:
                record = await self._manager.registry.get(self._aliases[sid])
            if record is not None:
                return record
        return None

    # ---- the OpenAI webhook side ----------------------------------------------------------

    async def precheck(self, call: IncomingCall) -> int | None:
        """Reject (603) a call whose Twilio leg already ended; else remember its extra SID.

        Runs in the manager before admission. Check and alias happen without an ``await``
        in between, so a status callback lands either before (remembered -> rejected here)
        or after (alias found -> ended through the manager).
        """
        parent = _header(call.sip_headers, PARENT_SID_HEADER)
        sids = [s for s in (call.twilio_call_sid, parent) if s]
        for sid in sids:
            status = self.statuses.get(sid)
            if status is not None:
                log.info(
                    "rejecting call: its Twilio leg already ended (%s)",
                    status,
                    extra={"call_id": call.call_id, "call_sid": sid},
                )
                return SIP_DECLINE
        if parent and parent != call.twilio_call_sid:
            self._aliases[parent] = call.call_id
            self._alias_of_call.setdefault(call.call_id, []).append(parent)
        return None

    def on_call_ended(self, record: CallRecord) -> None:
        """Forget a finished call's aliases (end listener: keeps the map bounded)."""
        for sid in self._alias_of_call.pop(record.call_id, ()):
            if self._aliases.get(sid) == record.call_id:
                del self._aliases[sid]

    @property
    def alias_count(self) -> int:
        return len(self._aliases)


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    value = next((v for k, v in headers if k.lower() == lname), None)
    if value is None or not value.isalnum() or len(value) > 64:
        return None  # untrusted SIP input: only a SID-shaped value is used
    return value
