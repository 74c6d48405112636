"""One realtime control websocket of the fake OpenAI, and the test script API on it.

The fake answers the client events the agents SDK waits for (``session.update`` ->
``session.updated`` and so on) so an unscripted session behaves; tests then push server
events with ``send`` and assert on client events with ``expect``. ``drop`` aborts the TCP
connection without a close frame: that is how a caller hanging up usually looks (code 1006).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from callserver.testing import server_events as se
from callserver.testing.fake_socket import FakeSocket
from callserver.testing.schemas import client_event_errors

__all__ = ["DEFAULT_AUTO_REPLIES", "FakeConnection", "ReplyHandler"]

Event = dict[str, Any]
#: Given the connection and a client event, return the server events to answer with.
ReplyHandler = Callable[["FakeConnection", Event], "list[Event] | Awaitable[list[Event]] | None"]
#: Called with every client event and its schema errors (the fake collects them).
EventSink = Callable[["FakeConnection", Event, list[str]], None]
#: Aborts the TCP transport under a websocket; returns False if none was found.
Aborter = Callable[[WebSocket], bool]


class FakeConnection(FakeSocket):
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
        super().__init__(f"call {call_id}", websocket, abort=abort)
        self.call_id = call_id
        #: Effective session config: accept body, then every session.update merged in.
        self.session: dict[str, Any] = se.session_object(session)
        #: (event, errors) for every client event that failed strict validation.
        self.schema_errors: list[tuple[Event, list[str]]] = []
        #: Per-connection copy; set a type to None to disable its reply, or add your own.
        self.auto_replies: dict[str, ReplyHandler | None] = dict(auto_replies)
        #: If False, ``response.create`` gets no reply: the test scripts the response.
        self.auto_respond = auto_respond
        #: Response id between a sent ``response.created`` and its ``response.done``.
        self.active_response_id: str | None = None
        #: Ids of conversation items, in order (for ``previous_item_id``).
        self.item_ids: list[str] = []
        self._on_event = on_event

    async def send(self, events: Event | list[Event]) -> None:
        """Send one server event or several, in order."""
        for event in [events] if isinstance(events, dict) else events:
            if self.closed.is_set():
                raise ConnectionError(f"websocket of call {self.call_id} is closed")
            self._track(event)
            await self._send_one(event)

    async def _greet(self) -> None:
        await self.send(se.session_created(self.session))

    async def _on_text(self, text: str) -> None:
        """Validate the client event strictly, record it, then auto-reply if one is set."""
        event = self._parse(text)
        parsed = not str(event.get("type", "")).startswith("<")
        errors = client_event_errors(event) if parsed else ["<root>: not a JSON object"]
        self.received.append(event)
        if errors:
            self.schema_errors.append((event, errors))
        self._on_event(self, event, errors)
        await self._notify_arrival()
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
