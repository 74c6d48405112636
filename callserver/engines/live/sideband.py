"""One call's GPT-Live sideband websocket, kept attached across drops.

The sideband is a control connection to a session whose media flows elsewhere (the SIP
leg): a drop ends nothing at OpenAI. So when it drops before ``session.closed``, this object
attaches again to the same ``/attach`` URL within the reattach budget (``engines/reattach``)
while the model waits for its next event, and:

- drops events it has seen already: an attach replays the last seconds of events with their
  original ``event_id``\\ s (reflected audio has no id and is not wanted here anyway);
- holds back sends during the gap and sends them after (a tool output is delivered once);
- tells the model when it is back, so it can send the session state again (the delegation);
- ends the stream when the session is gone (the attach is refused: 404) or the budget is
  spent: :attr:`outcome` says which.

Every frame is reported to the recording tap, when there is one. The websocket is
``websockets``' asyncio client rather than the ``openai`` package's sideband client: the
call path needs every raw frame, its own reattach policy and event-id deduplication across
attaches, and no per-event model parsing.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import websockets
from websockets.exceptions import ConnectionClosed

from callserver.engines.base import ControlObserver, FrameTap, ReattachPolicy
from callserver.engines.gate import Gate, next_or_change
from callserver.engines.reattach import CallEnded, ControlLost, Regain

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 5.0
PING_S = 5.0
"""Keepalive: a dead sideband (no close, no RST) is noticed within about twice this."""
MAX_FRAME_BYTES = 4 * 1024 * 1024
SEEN_EVENT_IDS = 4096
"""Event ids remembered for deduplication: far more than a 3 s replay can hold."""

Outcome = Literal["gone", "lost"]
SendFirst = Callable[[dict[str, Any]], Awaitable[None]]


class StreamOver(Exception):
    """No more events will come: the session is gone, or control could not be regained."""


class AttachRefused(Exception):
    """The upgrade succeeded but the session refused this sideband right after (an
    ``error`` event, then the close): e.g. one already attached where only one may be."""


ADMISSION_WAIT_S = 0.5
"""After an upgrade, how long a taking-over instance waits for an admission error before
it counts itself attached (a quiet session sends nothing)."""


class SidebandConnection:
    """See the module docstring. ``open`` once, then ``recv`` / ``send`` until ``close``."""

    def __init__(
        self,
        *,
        session_id: str,
        url: str,
        api_key: str,
        policy: ReattachPolicy,
        tap: FrameTap | None = None,
        observer: ControlObserver | None = None,
        held: bool = False,
    ) -> None:
        self.session_id = session_id
        self._url = url
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._policy = policy
        self._tap = tap
        self._regain = Regain(observer, call_id=session_id, what="sideband")
        self._ws: websockets.ClientConnection | None = None
        self._attached = asyncio.Event()
        self._closing = False
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self.on_reattached: Callable[[SendFirst], Awaitable[None]] | None = None
        """Called once a reattach succeeded, with a way to send before anything held back."""
        self.outcome: Outcome | None = None
        self.reattaches = 0
        self.gate: Gate[dict[str, Any]] = Gate(held=held)
        """Events are held back while the call moves between instances (``gate.py``)."""
        self.heard = asyncio.Event()
        """Set at the first frame: the session streams this sideband's events."""

    async def _connect(self) -> websockets.ClientConnection:
        return await websockets.connect(
            self._url,
            additional_headers=self._headers,
            open_timeout=min(OPEN_TIMEOUT_S, max(self._policy.budget_s, 0.5)),
            max_size=MAX_FRAME_BYTES,
            ping_interval=PING_S,
            ping_timeout=PING_S,
            close_timeout=2.0,
            # Small JSON events only (audio is on RTP): zlib's per-connection state would
            # cost more memory than compression saves on the wire (see realtime/sdk.py).
            compression=None,
        )

    async def open(self, *, confirm: bool = False) -> None:
        """Attach. With ``confirm`` (taking a call over), also wait briefly for the session
        to refuse the sideband after the upgrade; events read meanwhile are kept."""
        self._ws = await self._connect()
        self._attached.set()
        if confirm:
            await self._confirm(self._ws)

    async def _confirm(self, ws: websockets.ClientConnection) -> None:
        deadline = time.monotonic() + ADMISSION_WAIT_S
        last_error: dict[str, Any] | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await ws.recv()
            except TimeoutError:
                return
            except ConnectionClosed:
                self._closing = True
                detail = (last_error or {}).get("error", {}).get("code") or "closed"
                raise AttachRefused(str(detail)) from None
            event = self._parse(raw)
            if event is None or not self._first_time(event.get("event_id")):
                continue
            self.gate.kept.append(event)
            if event.get("type") != "error":
                return  # admitted: the session is talking to us
            last_error = event

    async def close(self) -> None:
        """Detach: this releases only our observer, not the call."""
        self._closing = True
        self._attached.set()
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def seen_ids(self) -> list[str]:
        """Recent event ids, newest last (a peer taking the call over skips them)."""
        return list(self._seen)

    def remember(self, event_ids: list[str]) -> None:
        """Events another instance already handled: not handled again here, and handed on
        as handled if the call moves again."""
        for event_id in event_ids:
            self._first_time(event_id)
        self.gate.handled(event_ids)

    # -- sending --------------------------------------------------------------------------

    def _frame_out(self, message: dict[str, Any]) -> str:
        message.setdefault("event_id", f"cs_{next(self._ids)}")
        if self._tap is not None:
            self._tap("ws_out", {"event": message})
        return json.dumps(message)

    async def send(self, message: dict[str, Any]) -> None:
        """Send now, or once control is back; ``ConnectionError`` if it never comes back."""
        text = self._frame_out(message)
        while True:
            if not self._attached.is_set():
                try:
                    await asyncio.wait_for(self._attached.wait(), self._policy.budget_s + 1)
                except TimeoutError:
                    raise ConnectionError("the Live sideband was lost") from None
            ws = self._ws
            if ws is None or self.outcome is not None or self._closing:
                raise ConnectionError("the Live sideband is closed")
            try:
                await ws.send(text)
                return
            except ConnectionClosed:
                if self._ws is ws:  # the reader has not noticed the drop yet
                    self._attached.clear()
                await asyncio.sleep(0)

    # -- receiving ------------------------------------------------------------------------

    async def recv(self, deadline: float | None) -> dict[str, Any] | None:
        """The next event not seen before, or None when ``deadline`` (monotonic) passes.
        Reattaches underneath after a drop; raises :class:`StreamOver` when that fails.
        While the gate is closed, events are kept rather than returned (``gate.py``)."""
        gate = self.gate
        while True:
            if gate.is_open and gate.kept:
                return self._pass(gate.kept.popleft())
            ws = self._ws
            if ws is None or self._closing:
                raise StreamOver("closed")
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await next_or_change(ws.recv, gate)
            except TimeoutError:
                return None
            except ConnectionClosed:
                if self._closing:
                    raise StreamOver("closed") from None
                await self._reattach()
                continue
            if raw is None:
                continue
            event = self._parse(raw)
            if event is None or not self._first_time(event.get("event_id")):
                continue
            if gate.skip and event.get("event_id") in gate.skip:
                continue  # the previous owner handled it (its stream was ahead of ours)
            if gate.is_open and not gate.kept:
                return self._pass(event)
            gate.kept.append(event)

    def _pass(self, event: dict[str, Any]) -> dict[str, Any]:
        event_id = event.get("event_id")
        self.gate.passed(event_id if isinstance(event_id, str) else None)
        return event

    def _parse(self, raw: str | bytes) -> dict[str, Any] | None:
        self.heard.set()
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("sideband frame is not JSON", extra={"call_id": self.session_id})
            return None
        if not isinstance(event, dict):
            return None
        if self._tap is not None:
            self._tap("ws_in", {"event": event})
        return event

    def _first_time(self, event_id: Any) -> bool:
        if not isinstance(event_id, str):
            return True
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
        return True

    async def _reattach(self) -> None:
        self._attached.clear()
        try:
            ws = await self._regain.connect_again(self._connect, self._policy)
        except CallEnded:
            self.outcome = "gone"
            self._attached.set()
            raise StreamOver("the session is gone") from None
        except ControlLost:
            self.outcome = "lost"
            self._attached.set()
            raise StreamOver("control lost") from None
        if self._closing:
            await ws.close()
            raise StreamOver("closed")
        self._ws = ws
        self.reattaches += 1
        if self.on_reattached is not None:
            # Before anything held back goes out: first make the session the current agent's.
            async def send_first(message: dict[str, Any]) -> None:
                await ws.send(self._frame_out(message))

            await self.on_reattached(send_first)
        self._attached.set()
        self._regain.back()
