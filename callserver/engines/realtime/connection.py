"""The Realtime control websocket as one connection that outlives drops.

The agents SDK's SIP model holds one websocket for the life of its session: it iterates it
for server events and sends client events on it. This object stands in for that websocket.
When the real one closes, for whatever reason (a clean close, 1006, 1011, a ping timeout),
it reconnects to the same call (``?call_id=``) within the reattach budget, while the SDK
waits on the next frame, and:

- re-sends the last ``session.update`` the SDK sent, so the session is the current agent's
  (its instructions and tools) whatever the server kept;
- holds back sends during the gap and sends them after, so a tool output produced while
  control was lost is delivered, once;
- ends the iteration when the call is gone (reattach refused: 404) or the budget is spent,
  which the SDK takes as the end of the stream; :attr:`outcome` says which.

Every frame is reported to the recording tap, when there is one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed

from callserver.engines.base import ControlObserver, FrameTap, ReattachPolicy
from callserver.engines.gate import Gate
from callserver.engines.reattach import CallEnded, ControlLost, reconnect

log = logging.getLogger(__name__)

Outcome = Literal["gone", "lost"]


class ReattachingConnection:
    """Looks like a ``websockets`` client connection to the SDK; see the module docstring."""

    def __init__(
        self,
        connection: Any,
        connect: Callable[[], Awaitable[Any]],
        *,
        call_id: str,
        policy: ReattachPolicy,
        tap: FrameTap | None = None,
        observer: ControlObserver | None = None,
        held: bool = False,
    ) -> None:
        self._connection = connection
        self.gate: Gate[str | bytes] = Gate(held=held)
        """Events are held back while the call moves between instances (``gate.py``)."""
        self._connect = connect
        self._call_id = call_id
        self._policy = policy
        self._tap = tap
        self._observer = observer
        self._attached = asyncio.Event()
        self._attached.set()
        self._closing = False
        self._last_session_update: str | bytes | None = None
        self.outcome: Outcome | None = None
        """Why the stream ended, if it was not our own close: the call was gone, or control
        could not be regained within the budget."""
        self.reattaches = 0

    # -- what the SDK calls ---------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        self._report("ws_out", message)
        if _is_session_update(message):
            self._last_session_update = message
        await self._send(message)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._frames()

    async def close(self, *args: Any, **kwargs: Any) -> None:
        """Our end of the session (the call ends or moves): no reattach after this."""
        self._closing = True
        self._attached.set()  # release senders waiting for a reattach that will not come
        await self._connection.close(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    # -- internals ----------------------------------------------------------------------

    def _report(self, kind: str, message: str | bytes) -> None:
        if self._tap is None:
            return
        try:
            event = json.loads(message)
        except ValueError:
            event = {"unparsed": message if isinstance(message, str) else repr(message)}
        self._tap(kind, {"event": event})

    async def _send(self, message: str | bytes) -> None:
        """Send now, or once control is back; raise if it never comes back."""
        while True:
            if not self._attached.is_set():
                try:
                    await asyncio.wait_for(self._attached.wait(), self._policy.budget_s + 1)
                except TimeoutError:
                    raise ConnectionError("control connection lost") from None
            if self.outcome is not None or self._closing:
                raise ConnectionError("control connection closed")
            connection = self._connection
            try:
                await connection.send(message)
                return
            except ConnectionClosed:
                if self._connection is connection:  # the reader has not noticed yet
                    self._attached.clear()
                await asyncio.sleep(0)

    async def _frames(self) -> AsyncIterator[str | bytes]:
        gate = self.gate
        while True:
            while gate.is_open and gate.kept:
                message = gate.kept.popleft()
                gate.passed(frame_id(message))
                yield message
            try:
                message = await self._next(gate)
            except ConnectionClosed:
                if self._closing:
                    return
                if not await self._reattach():
                    return
                continue
            if message is None:  # the gate opened or closed while we waited
                continue
            self._report("ws_in", message)
            if gate.is_open and not gate.kept:
                gate.passed(frame_id(message))
                yield message
            else:
                gate.kept.append(message)

    async def _next(self, gate: Gate[str | bytes]) -> str | bytes | None:
        """The next frame; while held, also wake up (None) when the gate changes."""
        if gate.is_open:
            return await self._connection.recv()
        receiving = asyncio.ensure_future(self._connection.recv())
        waiting = asyncio.ensure_future(gate.wait_changed())
        try:
            done, _ = await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if receiving in done:
            return receiving.result()
        receiving.cancel()  # safe with websockets: no frame is lost
        await asyncio.gather(receiving, return_exceptions=True)
        return None

    async def _reattach(self) -> bool:
        """Control dropped: get it back, or say why not (``outcome``)."""
        self._attached.clear()
        lost_at = time.monotonic()
        self._notify("lost", 0.0)
        log.warning("control connection dropped: reattaching", extra={"call_id": self._call_id})
        try:
            connection = await reconnect(
                self._connect, self._policy, call_id=self._call_id, started=lost_at
            )
        except CallEnded:
            self.outcome = "gone"
            self._notify("gone", time.monotonic() - lost_at)
            self._attached.set()
            return False
        except ControlLost as exc:
            log.error("reattach failed: %s", exc, extra={"call_id": self._call_id})
            self.outcome = "lost"
            self._notify("given_up", time.monotonic() - lost_at)
            self._attached.set()
            return False
        if self._closing:
            await connection.close()
            return False
        self._connection = connection
        self.reattaches += 1
        if self._last_session_update is not None:
            self._report("ws_out", self._last_session_update)
            await connection.send(self._last_session_update)
        gap = time.monotonic() - lost_at
        self._attached.set()
        self._notify("back", gap)
        log.info("reattached after %.2fs", gap, extra={"call_id": self._call_id})
        return True

    def _notify(self, event: Any, gap_s: float) -> None:
        if self._observer is not None:
            try:
                self._observer(event, gap_s)
            except Exception:
                log.exception("control observer failed", extra={"call_id": self._call_id})


def frame_id(message: str | bytes) -> str | None:
    """A frame's ``event_id`` without parsing it (every server frame passes here once)."""
    text = message if isinstance(message, str) else message.decode("utf-8", "replace")
    start = text.find('"event_id"')
    if start < 0:
        return None
    quote = text.find('"', text.find(":", start + 10) + 1)
    end = text.find('"', quote + 1)
    return text[quote + 1 : end] if quote >= 0 and end > quote else None


def _is_session_update(message: str | bytes) -> bool:
    """Whether an outgoing frame is a ``session.update`` (client frames are few and small)."""
    try:
        value = json.loads(message)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") == "session.update"
