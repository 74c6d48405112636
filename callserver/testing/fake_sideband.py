"""One GPT-Live sideband (``/v1/live/sessions/{id}/attach``) of the fake, server side.

It holds the websocket and what crossed it; the rules for what a client may send live in
``fake_live_rules.py`` and the session's state in ``fake_live.py``. Tests get one from
``FakeLive.wait_attached`` and assert on what callserver sent with :meth:`expect`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["FakeSideband"]

Event = dict[str, Any]
CLOSE_TIMEOUT = 2.0


class FakeSideband:
    """The server side of one attached sideband, scriptable from a test."""

    def __init__(
        self,
        session_id: str,
        websocket: WebSocket,
        *,
        graceful_close: bool,
        on_event: Callable[[FakeSideband, Event], Awaitable[None]],
        abort: Callable[[WebSocket], bool],
    ) -> None:
        self.session_id = session_id
        self.graceful_close = graceful_close
        """The client asked for a close handshake after ``session.closed``."""
        self.received: list[Event] = []
        """Client events in arrival order (also those that were refused)."""
        self.sent: list[Event] = []
        self.errors: list[tuple[Event, list[str]]] = []
        """(client event, why it was refused) for every refused client event."""
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._ws = websocket
        self._on_event = on_event
        self._abort = abort
        self._dropped = False
        self._consumed: set[int] = set()
        self._arrived = asyncio.Condition()
        self._send_lock = asyncio.Lock()

    # -- script API ---------------------------------------------------------------------

    async def send(self, event: Event) -> None:
        """Send one server event to this sideband only (the fake broadcasts through
        ``FakeLive.broadcast`` so that replay and fan-out see it)."""
        if self.closed.is_set():
            raise ConnectionError(f"sideband of {self.session_id} is closed")
        try:
            async with self._send_lock:
                await asyncio.wait_for(self._ws.send_text(json.dumps(event)), CLOSE_TIMEOUT)
        except WebSocketDisconnect as exc:
            raise ConnectionError(f"sideband of {self.session_id} is closing") from exc
        self.sent.append(event)

    async def expect(
        self,
        type_: str,
        predicate: Callable[[Event], bool] | None = None,
        timeout: float = 5.0,
    ) -> Event:
        """The oldest not-yet-expected client event of ``type_`` (matching ``predicate``)."""

        def find() -> Event | None:
            for index, event in enumerate(self.received):
                if index in self._consumed or event.get("type") != type_:
                    continue
                if predicate is None or predicate(event):
                    self._consumed.add(index)
                    return event
            return None

        try:
            async with asyncio.timeout(timeout), self._arrived:
                while (found := find()) is None:
                    await self._arrived.wait()
                return found
        except TimeoutError:
            types = [e.get("type") for e in self.received]
            raise AssertionError(
                f"session {self.session_id}: no client event {type_!r} within {timeout}s; "
                f"received: {types}"
            ) from None

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.received if e.get("type") == type_]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame and wait until the socket is gone."""
        if not self.closed.is_set():
            try:
                async with self._send_lock:
                    await asyncio.wait_for(self._ws.close(code=code, reason=reason), CLOSE_TIMEOUT)
            except (RuntimeError, OSError, TimeoutError, WebSocketDisconnect):
                pass  # the client went first
        if not await self._wait_closed(CLOSE_TIMEOUT):
            self._dropped = True
            self._abort(self._ws)
            await self._wait_closed(CLOSE_TIMEOUT)

    async def drop(self) -> None:
        """Abort the TCP connection without a close frame (the client sees 1006)."""
        if self.closed.is_set():
            return
        self._dropped = True
        if not self._abort(self._ws):
            raise RuntimeError(f"session {self.session_id}: transport not found, cannot drop")
        await self._wait_closed(CLOSE_TIMEOUT)

    async def end(self) -> None:
        """After ``session.closed``: a close handshake if the client asked for one
        (``graceful_close=true``), else an abrupt drop, as the service may do either."""
        if self.graceful_close:
            await self.close(1000)
        else:
            await self.drop()

    # -- server side ----------------------------------------------------------------------

    async def run(self) -> None:
        """Read client events until the socket closes; each goes to the session's rules."""
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    self.close_code = 1006 if self._dropped else message.get("code", 1005)
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                try:
                    event = json.loads(text)
                except json.JSONDecodeError:
                    event = {"type": "<invalid json>", "raw": text}
                if not isinstance(event, dict):
                    event = {"type": "<not an object>", "raw": event}
                self.received.append(event)
                async with self._arrived:
                    self._arrived.notify_all()
                await self._on_event(self, event)
        except (RuntimeError, OSError, ConnectionError, TimeoutError, WebSocketDisconnect):
            if self.close_code is None:
                self.close_code = 1006
        finally:
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def _wait_closed(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
        except TimeoutError:
            return False
        return True
