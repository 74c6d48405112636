"""The Realtime engine: OpenAI's Realtime API over SIP, run by the agents SDK's SIP model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from agents.realtime.model_inputs import RealtimeModelSendEvent, RealtimeModelSendRawMessage

from callserver.engines.base import (
    ControlObserver,
    EngineOptions,
    FrameTap,
    PostCallJob,
    StreamEnd,
    Takeover,
    attach_refused,
)
from callserver.engines.gate import HandOver
from callserver.engines.realtime import sdk
from callserver.engines.realtime.accept_bodies import AcceptBodies
from callserver.engines.realtime.connection import ReattachingConnection, frame_id
from callserver.engines.realtime.control import RealtimeControl
from callserver.engines.realtime.signals import realtime_signals
from callserver.engines.rest import DeadlineRest
from callserver.engines.signals import Signal
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph

WEBHOOK_EVENT = "realtime.call.incoming"


def ws_base(rest_base_url: str) -> str:
    """The websocket base derived from the REST base: same host and path, ws/wss scheme."""
    if rest_base_url.startswith("https://"):
        return "wss://" + rest_base_url[len("https://") :]
    return "ws://" + rest_base_url[len("http://") :]


class RealtimeCall(HandOver):
    """One call's SDK model on ``/realtime?call_id=...``."""

    def __init__(
        self,
        call_id: str,
        built: BuiltGraph,
        url: str,
        options: EngineOptions,
        tap: FrameTap | None,
        observer: ControlObserver | None,
        takeover: Takeover | None = None,
    ) -> None:
        self.model = sdk.make_model(
            built.model,
            tap,
            call_id=call_id,
            policy=options.reattach,
            observer=observer,
            held=takeover is not None and takeover.held,
        )
        self.model_config = sdk.model_config(
            call_id=call_id, url=url, api_key=options.api_key, settings=built.model_settings
        )

    def signals(self, message: dict[str, Any]) -> Sequence[Signal]:
        return realtime_signals(message)

    def say(self, instructions: str) -> RealtimeModelSendEvent:
        return RealtimeModelSendRawMessage(
            message={
                "type": "response.create",
                "other_data": {"response": {"instructions": instructions}},
            }
        )

    def greeting(self, text: str) -> RealtimeModelSendEvent | None:
        return self.say(text)

    def stream_end(self, error: BaseException | None) -> StreamEnd:
        """The control websocket reattaches after any drop (``connection.py``), so the
        stream only stops for good when the call is gone (the reattach was refused: the
        caller hung up) or control could not be regained within the budget."""
        del error
        connection = self._connection()
        if connection is not None and connection.outcome == "lost":
            return StreamEnd("control_lost", hangup=True)
        return StreamEnd("caller_hangup", hangup=False)

    def connect_failed(self, error: BaseException) -> StreamEnd:
        return attach_refused(error)

    def post_call_job(self) -> PostCallJob | None:
        return None

    def _connection(self) -> ReattachingConnection | None:
        return self.model.connection if isinstance(self.model, sdk.CallSIPModel) else None

    _gated = _connection

    @staticmethod
    def _event_id(event: Any) -> str | None:
        return frame_id(event)

    def pending_tool_calls(self) -> int:
        connection = self._connection()
        return len(connection.tool_calls) if connection is not None else 0


class RealtimeEngine:
    """Implements ``engines.base.Engine`` for the Realtime API."""

    name = "realtime"
    webhook_event = WEBHOOK_EVENT
    refer_settle_s = 0.0
    """A Realtime call is the transfer target's once REFER succeeds: end our side at once."""
    close_wait_s = 0.0
    """Realtime sends nothing after a hangup: close at once."""

    def __init__(self, rest: DeadlineRest, options: EngineOptions) -> None:
        self.control = RealtimeControl(rest)
        self._ws_base = ws_base(options.base_url.rstrip("/"))
        self._options = options
        self._bodies = AcceptBodies()

    def url(self, call_id: str) -> str:
        """Control websocket URL for one call."""
        return f"{self._ws_base}/realtime?call_id={quote(call_id, safe='')}"

    async def accept_body(self, built: BuiltGraph, context: CallToolContext) -> dict[str, Any]:
        return await self._bodies.body(built, context)

    def attach(
        self,
        call_id: str,
        built: BuiltGraph,
        tap: FrameTap | None,
        observer: ControlObserver | None = None,
        takeover: Takeover | None = None,
    ) -> RealtimeCall:
        return RealtimeCall(
            call_id, built, self.url(call_id), self._options, tap, observer, takeover
        )
