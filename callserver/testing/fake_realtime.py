"""One realtime control websocket of the fake OpenAI, and the test script API on it.

The fake answers the client events the agents SDK waits for (``session.update`` ->
``session.updated`` and so on) so an unscripted session behaves; tests then push server
events with ``send`` and assert on client events with ``expect``. ``drop`` aborts the TCP
connection without a close frame: that is how a caller hanging up usually looks (code 1006).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from callserver.testing import server_events as se
from callserver.testing.schemas import client_event_errors

__all__ = ["DEFAULT_AUTO_REPLIES", "FakeConnection", "ReplyHandler"]

Event = dict[str, Any]
#: Given the connection and a client event, return the server events to answer with.
ReplyHandler = Callable[["FakeConnection", Event], "list[Event] | Awaitable[list[Event]] | None"]
#: Called with every client event and its schema errors (the fake collects them).
EventSink = Callable[["FakeConnection", Event, list[str]], None]
#: Aborts the TCP transport under a websocket; returns False if none was found.
Aborter = Callable[[WebSocket], bool]

CLOSE_TIMEOUT = 2.0


class FakeConnection:
    """The server side of one accepted control websocket, scriptable from a test."""

    def __init__(
        self,
        call_id: str,
        websocket: WebSocket,
        session: dict[str, Any],
        *,
        auto_replies: dict[str, ReplyHandler | None],
        auto_respond: bool,
        on_event: EventSink,
        abort: Aborter,
    ) -> None:
        self.call_id = call_id
        #: Effective session config: accept body, then every session.update merged in.
        self.session: dict[str, Any] = se.session_object(session)
        #: Client events in arrival order (also those that failed validation).
        self.received: list[Event] = []
        #: Server events sent, in order.
        self.sent: list[Event] = []
        #: (event, errors) for every client event that failed strict validation.
        self.schema_errors: list[tuple[Event, list[str]]] = []
        #: Per-connection copy; set a type to None to disable its reply, or add your own.
        self.auto_replies: dict[str, ReplyHandler | None] = dict(auto_replies)
        #: If False, ``response.create`` gets no reply: the test scripts the response.
        self.auto_respond = auto_respond
        #: Set once the websocket is closed, whoever closed it.
        self.closed = asyncio.Event()
        #: Close code as seen by the server (1006 when the transport was aborted).
        self.close_code: int | None = None
        #: Response id between a sent ``response.created`` and its ``response.done``.
        self.active_response_id: str | None = None
        #: Ids of conversation items, in order (for ``previous_item_id``).
        self.item_ids: list[str] = []
        self._ws = websocket
        self._on_event = on_event
        self._abort = abort
        self._dropped = False
        self._consumed: set[int] = set()
        self._arrived = asyncio.Condition()
        self._send_lock = asyncio.Lock()

    # -- script API ---------------------------------------------------------------------

    async def send(self, events: Event | list[Event]) -> None:
        """Send one server event or several, in order."""
        for event in [events] if isinstance(events, dict) else events:
            if self.closed.is_set():
                raise ConnectionError(f"websocket of call {self.call_id} is closed")
            self._track(event)
            try:
                async with self._send_lock:
                    await asyncio.wait_for(self._ws.send_text(json.dumps(event)), CLOSE_TIMEOUT)
            except WebSocketDisconnect as exc:
                raise ConnectionError(f"websocket of call {self.call_id} is closing") from exc
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
                f"call {self.call_id}: no client event {type_!r} within {timeout}s; "
                f"received: {types}"
            ) from None

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
            raise RuntimeError(f"call {self.call_id}: transport not found, cannot drop")
        await self._wait_closed(CLOSE_TIMEOUT)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the websocket is closed; AssertionError on timeout."""
        if not await self._wait_closed(timeout):
            raise AssertionError(f"call {self.call_id}: websocket still open after {timeout}s")

    # -- server side ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes: greet, then read and answer client events."""
        try:
            await self.send(se.session_created(self.session))
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    # uvicorn may report an aborted transport as 1005; the peer sees 1006.
                    self.close_code = 1006 if self._dropped else message.get("code", 1005)
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self._handle(text)
        except (RuntimeError, OSError, ConnectionError, TimeoutError, WebSocketDisconnect):
            if self.close_code is None:
                self.close_code = 1006
        finally:
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def _handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            event = {"type": "<invalid json>", "raw": text}
        errors = (
            client_event_errors(event)
            if isinstance(event, dict) and event.get("type") != "<invalid json>"
            else ["<root>: not a JSON object"]
        )
        if not isinstance(event, dict):
            event = {"type": "<not an object>", "raw": event}
        self.received.append(event)
        if errors:
            self.schema_errors.append((event, errors))
        self._on_event(self, event, errors)
        async with self._arrived:
            self._arrived.notify_all()
        handler = self.auto_replies.get(str(event.get("type")))
        if handler is None:
            return
        replies = handler(self, event)
        if inspect.isawaitable(replies):
            replies = await replies
        if replies:
            await self.send(replies)

    def _track(self, event: Event) -> None:
        """Follow the response lifecycle and items from what the test sends."""
        kind = event.get("type")
        if kind == "response.created":
            self.active_response_id = event["response"]["id"]
        elif kind == "response.done":
            self.active_response_id = None
        elif kind == "conversation.item.added":
            item_id = event.get("item", {}).get("id")
            if item_id and item_id not in self.item_ids:
                self.item_ids.append(item_id)

    async def _wait_closed(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
        except TimeoutError:
            return False
        return True


# -- default auto replies -------------------------------------------------------------------


def reply_session_update(conn: FakeConnection, event: Event) -> list[Event]:
    """Merge the update into the session and echo the whole session, as the service does."""
    conn.session = se.deep_merge(conn.session, event.get("session") or {})
    return [se.session_updated(conn.session)]


def reply_response_create(conn: FakeConnection, event: Event) -> list[Event]:
    """An empty completed response, unless the test scripts responses itself."""
    if not conn.auto_respond:
        return []
    response_id = se.new_id("resp")
    return [se.response_created(response_id), se.response_done(response_id)]


def reply_response_cancel(conn: FakeConnection, event: Event) -> list[Event]:
    """Cancel the active response, or the service's error when there is none."""
    if conn.active_response_id is None:
        return [
            se.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                event_id=event.get("event_id"),
            )
        ]
    return [
        se.response_done(conn.active_response_id, status="cancelled", reason="client_cancelled")
    ]


def reply_item_create(conn: FakeConnection, event: Event) -> list[Event]:
    """Add the item (with an id) to the conversation: ``added`` then ``done``."""
    item = {"id": se.new_id("item"), "object": "realtime.item", "status": "completed"}
    item.update(event.get("item") or {})
    previous = event.get("previous_item_id") or (conn.item_ids[-1] if conn.item_ids else None)
    return [se.conversation_item_added(item, previous), se.conversation_item_done(item, previous)]


def reply_item_truncate(conn: FakeConnection, event: Event) -> list[Event]:
    """Confirm a truncation (the SDK sends one when the caller interrupts)."""
    return [
        {
            "event_id": se.new_id("event"),
            "type": "conversation.item.truncated",
            "item_id": event.get("item_id"),
            "content_index": event.get("content_index", 0),
            "audio_end_ms": event.get("audio_end_ms", 0),
        }
    ]


DEFAULT_AUTO_REPLIES: dict[str, ReplyHandler | None] = {
    "session.update": reply_session_update,
    "response.create": reply_response_create,
    "response.cancel": reply_response_cancel,
    "conversation.item.create": reply_item_create,
    "conversation.item.truncate": reply_item_truncate,
}
