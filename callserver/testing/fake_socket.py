"""The server side of one fake control websocket: what both engines' fakes share.

A Realtime control websocket (``fake_realtime.FakeConnection``) and a GPT-Live sideband
(``fake_sideband.FakeSideband``) speak different protocols but are scripted the same way:
send server events, ``expect`` client events, ``close`` with a close frame, or ``drop`` the
TCP connection without one (what a network blip or a dead peer looks like). Subclasses
decide what to do with each client event (``_on_text``) and what to send first (``_greet``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["CLOSE_TIMEOUT", "FakeSocket"]

Event = dict[str, Any]
CLOSE_TIMEOUT = 2.0


class FakeSocket:
    """One accepted websocket of the fake, scriptable from a test."""

    def __init__(self, name: str, websocket: WebSocket, *, abort: Callable[[WebSocket], bool]):
        self._name = name
        #: Client events in arrival order (also those that were refused).
        self.received: list[Event] = []
        #: Server events sent, in order.
        self.sent: list[Event] = []
        #: Set once the websocket is closed, whoever closed it.
        self.closed = asyncio.Event()
        #: Close code as seen by the server (1006 when the transport was aborted).
        self.close_code: int | None = None
        self._ws = websocket
        self._abort = abort
        self._dropped = False
        self._consumed: set[int] = set()
        self._arrived = asyncio.Condition()
        self._send_lock = asyncio.Lock()

    # -- script API ---------------------------------------------------------------------

    async def _send_one(self, event: Event) -> None:
        if self.closed.is_set():
            raise ConnectionError(f"{self._name} is closed")
        try:
            async with self._send_lock:
                await asyncio.wait_for(self._ws.send_text(json.dumps(event)), CLOSE_TIMEOUT)
        except WebSocketDisconnect as exc:
            raise ConnectionError(f"{self._name} is closing") from exc
        self.sent.append(event)

    async def expect(
        self,
        type_: str,
        predicate: Callable[[Event], bool] | None = None,
        timeout: float = 5.0,
    ) -> Event:
        """The oldest not-yet-expected client event of ``type_`` (matching ``predicate``).

        Waits for it if it has not arrived. Each event is returned at most once, so two
        ``expect("response.create")`` calls need two events.
        """

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
                f"{self._name}: no client event {type_!r} within {timeout}s; received: {types}"
            ) from None

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.received if e.get("type") == type_]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close cleanly (close frame with ``code``) and wait until the socket is gone."""
        if not self.closed.is_set():
            try:
                async with self._send_lock:
                    await asyncio.wait_for(self._ws.close(code=code, reason=reason), CLOSE_TIMEOUT)
            except (RuntimeError, OSError, TimeoutError, WebSocketDisconnect):
                pass  # already closing or gone: the outcome is the same
        if not await self._wait_closed(CLOSE_TIMEOUT):
            self._dropped = True  # the peer never answered the close frame: cut it
            self._abort(self._ws)
            await self._wait_closed(CLOSE_TIMEOUT)

    async def drop(self) -> None:
        """Abort the TCP connection without a close frame; the client sees code 1006."""
        if self.closed.is_set():
            return
        self._dropped = True
        if not self._abort(self._ws):
            raise RuntimeError(f"{self._name}: transport not found, cannot drop")
        await self._wait_closed(CLOSE_TIMEOUT)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the websocket is closed; AssertionError on timeout."""
        if not await self._wait_closed(timeout):
            raise AssertionError(f"{self._name}: websocket still open after {timeout}s")

    # -- server side ----------------------------------------------------------------------

    async def _greet(self) -> None:
        """What the service sends first on a new connection (nothing by default)."""

    async def _on_text(self, text: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Serve the connection until it closes: greet, then read and answer client events."""
        try:
            await self._greet()
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    # uvicorn may report an aborted transport as 1005; the peer sees 1006.
                    self.close_code = 1006 if self._dropped else message.get("code", 1005)
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self._on_text(text)
        except (RuntimeError, OSError, ConnectionError, TimeoutError, WebSocketDisconnect):
            if self.close_code is None:
                self.close_code = 1006
        finally:
            self.closed.set()
            await self._notify_arrival()

    @staticmethod
    def _parse(text: str) -> Event:
        """A client message as an event; what is not a JSON object is kept, typed, as such."""
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            return {"type": "<invalid json>", "raw": text}
        if not isinstance(event, dict):
            return {"type": "<not an object>", "raw": event}
        return event

    async def _record(self, event: Event) -> None:
        """Keep a client event and wake whoever ``expect``s one."""
        self.received.append(event)
        await self._notify_arrival()

    async def _notify_arrival(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    async def _wait_closed(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
        except TimeoutError:
            return False
        return True
