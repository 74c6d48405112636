"""The seam between the call path and an engine (Realtime, GPT-Live): the interfaces only.

The call manager and the call session talk to an engine through :class:`Engine` and the
per-call :class:`EngineCall`; everything that knows an engine's URLs, message shapes or
quirks lives in ``engines/<name>/``. The agents SDK's ``RealtimeModel`` is the session-level
half of the seam: each engine provides one, so the SDK's ``RealtimeSession`` runs tools,
handoffs and guardrails the same way on both.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agents.realtime.model import RealtimeModel, RealtimeModelConfig
from agents.realtime.model_inputs import RealtimeModelSendEvent

from callserver.engines.signals import Signal

if TYPE_CHECKING:
    from callserver.graph.context import CallToolContext
    from callserver.graph.spec import BuiltGraph

FrameTap = Callable[[str, dict[str, Any]], None]
"""Called with ("ws_out" | "ws_in", {"event": <parsed frame>}) for every control frame."""
PostCallJob = Callable[[threading.Event], dict[str, Any]]
"""Blocking work after a call ended (run in a worker thread; stop when the event is set);
returns what goes on the record (e.g. a downloaded recording's file)."""


ControlEvent = Literal["lost", "back", "gone", "given_up"]
ControlObserver = Callable[[ControlEvent, float], None]
"""Told when control drops (``lost``, 0), comes back (``back``, seconds without control),
turns out to be over (``gone``: the call ended meanwhile) or cannot be regained
(``given_up``); the call session counts these on the record and in metrics."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReattachPolicy:
    """How hard to regain a dropped control connection: ``budget_s`` in all, with jittered
    waits growing from ``initial_s`` to ``max_s`` (see ``engines/reattach.py``)."""

    budget_s: float = 10.0
    initial_s: float = 0.05
    max_s: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Takeover:
    """Attaching to a call this instance did not accept: another one handed it over, or
    died. ``held``: keep events back until the leaving instance names its last one (both
    attached at once); ``seen``: event ids already handled (a Live attach replays recent
    events). The current agent's session configuration is always sent again."""

    held: bool = False
    seen: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class EngineOptions:
    """What every engine is built from: one base URL for every OpenAI URL, one key."""

    base_url: str
    api_key: str
    recording_dir: Path = Path("recordings")
    reattach: ReattachPolicy = ReattachPolicy()


class CallControl(Protocol):
    """Call control over REST: the four decisions callserver makes about a call."""

    async def accept(self, call_id: str, body: dict[str, Any], *, deadline: float) -> None: ...

    async def reject(self, call_id: str, status_code: int, *, deadline: float) -> None: ...

    async def refer(self, call_id: str, target_uri: str, *, deadline: float) -> None: ...

    async def hangup(self, call_id: str, *, deadline: float) -> bool:
        """False when the call was already gone (404), which is success."""


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why a call's control stream stopped, and whether the call may still be connected
    (then the end path hangs it up so no caller is left talking to nobody)."""

    reason: str
    hangup: bool


def handshake_status(error: BaseException) -> int | None:
    """The HTTP status a refused websocket upgrade answered, wherever it sits in the chain."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return None
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        seen = seen.__cause__ or seen.__context__
    return None


def attach_refused(error: BaseException) -> StreamEnd:
    """Why attaching failed, for either engine: a 404 means the call is already over (the
    caller hung up between the accept and the attach), so there is nothing to hang up;
    anything else leaves a call nobody controls, which the end path hangs up."""
    if handshake_status(error) == 404:
        return StreamEnd("caller_hangup", hangup=False)
    return StreamEnd("connect_failed", hangup=True)


class EngineCall(Protocol):
    """One call on one engine: the SDK model to run the session on, and the engine's
    translations of what the session needs to say or hear."""

    model: RealtimeModel
    model_config: RealtimeModelConfig

    def signals(self, message: dict[str, Any]) -> Sequence[Signal]:
        """Raw server event -> what it means for the call (often nothing)."""

    def say(self, instructions: str) -> RealtimeModelSendEvent:
        """The message that makes the agent speak now, following ``instructions``."""

    def greeting(self, text: str) -> RealtimeModelSendEvent | None:
        """How the agent speaks first once attached; None when the accept already said so."""

    def stream_end(self, error: BaseException | None) -> StreamEnd:
        """Called once the session's event stream stopped (``error``: what it raised)."""

    def connect_failed(self, error: BaseException) -> StreamEnd:
        """Called when attaching to the accepted call failed (``error``: what it raised)."""

    def post_call_job(self) -> PostCallJob | None:
        """Work to do once the call has ended, if any (Live: download a stored recording)."""

    def hold(self) -> str | None:
        """Stop handing events to the session (the call is moving to another instance);
        returns the ``event_id`` of the last event handed over."""

    def release_after(self, event_id: str | None) -> None:
        """A held attach goes live: events up to ``event_id`` were the leaving instance's."""

    def seen_ids(self) -> list[str]:
        """Recent event ids handled (for an instance taking over after a break)."""


class Engine(Protocol):
    """One OpenAI voice API. Instances live for the app's lifetime (see ``engines.registry``)."""

    name: str
    webhook_event: str
    """The incoming-call webhook event an operator subscribes to for graphs on this engine."""
    control: CallControl
    refer_settle_s: float
    """After a successful REFER, how long to wait for the engine to end the session itself
    before hanging up; 0 = the call is ours no longer at once."""
    close_wait_s: float
    """After our hangup, how long the session may take to deliver its final event (Live:
    ``session.closed`` with the usage) before we close it; 0 = close at once."""

    async def accept_body(self, built: BuiltGraph, context: CallToolContext) -> dict[str, Any]:
        """The accept request's body, from the same graph source as the session."""

    def attach(
        self,
        call_id: str,
        built: BuiltGraph,
        tap: FrameTap | None,
        observer: ControlObserver | None = None,
        takeover: Takeover | None = None,
    ) -> EngineCall:
        """A fresh per-call adapter (a model object connects exactly once); ``observer``
        hears about drops and reattaches of its control connection; ``takeover`` when the
        call was accepted elsewhere."""
