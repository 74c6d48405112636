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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed

from callserver.engines.base import ControlObserver, FrameTap, ReattachPolicy
from callserver.engines.gate import Gate, next_or_change
from callserver.engines.reattach import CallEnded, ControlLost, Regain

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
        self._regain = Regain(observer, call_id=call_id, what="control connection")
        self._attached = asyncio.Event()
        self._attached.set()
        self._closing = False
        self._last_session_update: str | bytes | None = None
        self.heard = asyncio.Event()
        """Set at the first frame: the service streams this connection's events."""
        self.tool_calls: set[str] = set()
        """Function calls handed to the session whose output has not gone out yet."""
        self.outcome: Outcome | None = None
        """Why the stream ended, if it was not our own close: the call was gone, or control
        could not be regained within the budget."""
        self.reattaches = 0

    # -- what the SDK calls ---------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        self._report("ws_out", message)
        kind, value = _client_frame(message)
        if kind == "session.update":
            self._last_session_update = message
        await self._send(message)
        if kind == "conversation.item.create" and isinstance(value, dict):
            item = value.get("item") or {}
            if item.get("type") == "function_call_output":
                self.tool_calls.discard(str(item.get("call_id")))

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
                self._note_tool_call(message)
                yield message
            try:
                message = await next_or_change(self._connection.recv, gate)
            except ConnectionClosed:
                if self._closing:
                    return
                if not await self._reattach():
                    return
                continue
            if message is None:  # the gate opened or closed while we waited
                continue
            self.heard.set()
            self._report("ws_in", message)
            if gate.skip and frame_id(message) in gate.skip:
                continue  # the previous owner handled it (its stream was ahead of ours)
            if gate.is_open and not gate.kept:
                gate.passed(frame_id(message))
                self._note_tool_call(message)
                yield message
            else:
                gate.kept.append(message)

    def _note_tool_call(self, message: str | bytes) -> None:
        """Track function calls handed to the session (a hand-over waits for their outputs).
        Only frames that can carry one are parsed."""
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        if '"response.output_item.done"' not in text or '"function_call"' not in text:
            return
        try:
            item = json.loads(text).get("item") or {}
        except (ValueError, AttributeError):
            return
        if item.get("type") == "function_call" and item.get("status") == "completed":
            self.tool_calls.add(str(item.get("call_id")))

    async def _reattach(self) -> bool:
        """Control dropped: get it back, or say why not (``outcome``)."""
        self._attached.clear()
        try:
            connection = await self._regain.connect_again(self._connect, self._policy)
        except (CallEnded, ControlLost) as exc:
            self.outcome = "gone" if isinstance(exc, CallEnded) else "lost"
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
        self._attached.set()
        self._regain.back()
        return True


def frame_id(message: str | bytes) -> str | None:
    """A frame's ``event_id`` without parsing it (every server frame passes here once)."""
    text = message if isinstance(message, str) else message.decode("utf-8", "replace")
    start = text.find('"event_id"')
    if start < 0:
        return None
    quote = text.find('"', text.find(":", start + 10) + 1)
    end = text.find('"', quote + 1)
    return text[quote + 1 : end] if quote >= 0 and end > quote else None


def _client_frame(message: str | bytes) -> tuple[str | None, Any]:
    """(type, parsed frame) of an outgoing frame (client frames are few and small)."""
    try:
        value = json.loads(message)
    except ValueError:
        return None, None
    return (value.get("type"), value) if isinstance(value, dict) else (None, value)
