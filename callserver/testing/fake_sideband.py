"""One GPT-Live sideband (``/v1/live/sessions/{id}/attach``) of the fake, server side.

It holds the websocket and what crossed it; the rules for what a client may send live in
``fake_live_rules.py`` and the session's state in ``fake_live.py``. Tests get one from
``FakeLive.wait_attached`` and assert on what callserver sent with :meth:`expect`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from callserver.testing.fake_socket import FakeSocket

__all__ = ["FakeSideband"]

Event = dict[str, Any]


class FakeSideband(FakeSocket):
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
        super().__init__(f"sideband of {session_id}", websocket, abort=abort)
        self.session_id = session_id
        self.graceful_close = graceful_close
        """The client asked for a close handshake after ``session.closed``."""
        self.errors: list[tuple[Event, list[str]]] = []
        """(client event, why it was refused) for every refused client event."""
        self._on_event = on_event

    async def send(self, event: Event) -> None:
        """Send one server event to this sideband only (the fake broadcasts through
        ``FakeLive.broadcast`` so that replay and fan-out see it)."""
        await self._send_one(event)

    async def end(self) -> None:
        """After ``session.closed``: a close handshake if the client asked for one
        (``graceful_close=true``), else an abrupt drop, as the service may do either."""
        if self.graceful_close:
            await self.close(1000)
        else:
            await self.drop()

    async def _on_text(self, text: str) -> None:
        """Each client event goes to the session's rules (``fake_live_rules.py``)."""
        event = self._parse(text)
        await self._record(event)
        await self._on_event(self, event)
