"""The GPT-Live engine: OpenAI's Live API over SIP (``/v1/live/sessions``), with the call's
agent graph run by the agents SDK session on the Live sideband (``model.py``)."""

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
from callserver.engines.live.accept import live_accept_body
from callserver.engines.live.control import LiveControl
from callserver.engines.live.model import MAX_APPEND_CHARS, LiveSidebandModel
from callserver.engines.live.recording import RecordingJob, download
from callserver.engines.live.sideband import SidebandConnection
from callserver.engines.live.signals import live_signals
from callserver.engines.realtime.engine import ws_base
from callserver.engines.rest import DeadlineRest
from callserver.engines.signals import Signal
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph

WEBHOOK_EVENT = "live.transport.incoming"

CLOSE_REASONS: dict[str, str] = {
    "remote_hangup": "caller_hangup",
    "close_requested": "hangup_requested",
    "expired": "session_expired",
    "content": "content_policy",
    "connection_lost": "connection_lost",
}
"""``session.closed.reason`` -> our end reason. ``close_requested`` that we did not send
(our own hangup ends the call first) means another client of the project closed it."""

REFER_SETTLE_S = 10.0


class LiveCall(HandOver):
    """One call's sideband model and the Live ways of saying things."""

    def __init__(
        self,
        session_id: str,
        built: BuiltGraph,
        url: str,
        options: EngineOptions,
        tap: FrameTap | None,
        observer: ControlObserver | None = None,
        takeover: Takeover | None = None,
    ) -> None:
        if built.live is None:
            raise ValueError("not a Live graph")
        self._options = options
        self._store = built.live.settings.store
        self.model = LiveSidebandModel(
            session_id=session_id,
            live=built.live,
            agents=built.agents,
            tap=tap,
            policy=options.reattach,
            observer=observer,
            takeover=takeover,
        )
        self.model_config: Any = {
            "url": url,
            "api_key": options.api_key,
            "initial_model_settings": built.model_settings,
        }

    def signals(self, message: dict[str, Any]) -> Sequence[Signal]:
        return live_signals(message)

    def say(self, instructions: str) -> RealtimeModelSendEvent:
        """Live has no "speak now": appended instructions are what the voice model acts on."""
        return RealtimeModelSendRawMessage(
            message={
                "type": "session.instructions.append",
                "other_data": {"delegation_id": None, "content": instructions[:MAX_APPEND_CHARS]},
            }
        )

    def greeting(self, text: str) -> RealtimeModelSendEvent | None:
        return None  # the accept's instructions open the call with it (accept.py)

    def stream_end(self, error: BaseException | None) -> StreamEnd:
        closed = self.model.closed_event
        if closed is not None:
            reason = str(closed.get("reason"))
            return StreamEnd(CLOSE_REASONS.get(reason, "session_closed"), hangup=False)
        connection = self.model.connection
        if connection is not None and connection.outcome == "gone":
            # The reattach was refused: the session ended while we were away, and the
            # session.closed with its reason went to nobody. The caller hung up.
            return StreamEnd("caller_hangup", hangup=False)
        # Control could not be regained: the call may well go on, but nobody runs its
        # tools any more, so hang it up rather than leave the caller with a deaf agent.
        return StreamEnd("control_lost", hangup=True)

    def connect_failed(self, error: BaseException) -> StreamEnd:
        return attach_refused(error)

    def _gated(self) -> SidebandConnection | None:
        return self.model.connection

    @staticmethod
    def _event_id(event: Any) -> str | None:
        return event.get("event_id")

    def pending_tool_calls(self) -> int:
        return self.model.pending_tool_calls

    def post_call_job(self) -> PostCallJob | None:
        """With ``store: true``, the call's stereo recording is downloaded once finalised."""
        if not self._store:
            return None
        job = RecordingJob(
            base_url=self._options.base_url,
            api_key=self._options.api_key,
            session_id=self.model.session_id,
            directory=self._options.recording_dir,
        )
        return lambda stop: download(job, stop)


class LiveEngine:
    """Implements ``engines.base.Engine`` for GPT-Live."""

    name = "live"
    webhook_event = WEBHOOK_EVENT
    refer_settle_s = REFER_SETTLE_S
    """What the Live session does after a successful REFER is not documented: wait this long
    for it to close, then hang up (the transferred caller is on another leg by then)."""
    close_wait_s = 2.0
    """Live confirms a hangup with ``session.closed`` (reason, final usage): wait for it."""

    def __init__(self, rest: DeadlineRest, options: EngineOptions) -> None:
        self.control = LiveControl(rest)
        self._ws_base = ws_base(options.base_url.rstrip("/"))
        self._options = options

    def url(self, session_id: str) -> str:
        """The sideband URL; ``graceful_close`` asks for a close handshake after the end."""
        return (
            f"{self._ws_base}/live/sessions/{quote(session_id, safe='')}/attach?graceful_close=true"
        )

    async def accept_body(self, built: BuiltGraph, context: CallToolContext) -> dict[str, Any]:
        return await live_accept_body(built, context)

    def attach(
        self,
        call_id: str,
        built: BuiltGraph,
        tap: FrameTap | None,
        observer: ControlObserver | None = None,
        takeover: Takeover | None = None,
    ) -> LiveCall:
        return LiveCall(call_id, built, self.url(call_id), self._options, tap, observer, takeover)
