"""GPT-Live's sideband as an agents-SDK ``RealtimeModel``, so the SDK session runs Live calls.

The SDK's ``RealtimeSession`` runs tools, handoffs and output guardrails against the five
``RealtimeModel`` methods. This model speaks the Live sideband protocol
(``/v1/live/sessions/{id}/attach``) underneath, so a graph is the same code on both engines:

- delegated function calls (``response.event`` -> nested ``response.output_item.done`` with a
  ``function_call`` item) become SDK tool calls; their outputs go back as
  ``response.item.create`` items, and one ``response.create`` follows once the backend
  response is complete and every one of its calls has its output;
- an SDK session update (a handoff) becomes a ``session.update`` of the Responses delegation
  (the new agent's prompt and tools) plus a ``session.instructions.append`` telling the voice
  model who it now is (its own prompt is immutable);
- transcript fragments become SDK transcript deltas and turns (``turns.TurnTracker``), which
  drive the SDK's output guardrails; a guardrail's interrupt becomes an instructions append
  telling the model to stop (Live has no response.cancel for the voice model);
- ``session.closed`` ends the event stream; its reason is kept for the end path.

The websocket itself, its reattach after a drop and the deduplication of replayed events
by ``event_id`` are ``sideband.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from agents.realtime import RealtimeAgent
from agents.realtime.model import RealtimeModel, RealtimeModelConfig, RealtimeModelListener
from agents.realtime.model_events import (
    RealtimeModelConnectionStatusEvent,
    RealtimeModelEndOfStreamEvent,
    RealtimeModelErrorEvent,
    RealtimeModelEvent,
    RealtimeModelRawServerEvent,
)
from agents.realtime.model_inputs import (
    RealtimeModelSendAudio,
    RealtimeModelSendEvent,
    RealtimeModelSendInterrupt,
    RealtimeModelSendRawMessage,
    RealtimeModelSendSessionUpdate,
    RealtimeModelSendToolOutput,
    RealtimeModelSendUserInput,
)

from callserver.engines.base import ControlObserver, FrameTap, ReattachPolicy, Takeover
from callserver.engines.live.backend import BackendCalls
from callserver.engines.live.sideband import SendFirst, SidebandConnection, StreamOver
from callserver.engines.live.tools import backend_update, function_tools
from callserver.engines.live.turns import TurnTracker
from callserver.graph.spec import BuiltLive

log = logging.getLogger(__name__)

MAX_APPEND_CHARS = 1800
"""Appended instructions are limited to 500 tokens; ~3.6 characters per token is safe."""
STOP_SPEAKING = (
    "Stop speaking now: what you were saying breaks one of your rules. Do not finish it or "
    "repeat it. Apologise briefly and carry on with the caller."
)
NO_CLIENT_WORK = "There is nothing to look up for this: answer the caller yourself."


def _text_of(user_input: Any) -> str:
    if isinstance(user_input, str):
        return user_input
    parts = user_input.get("content") or []
    return " ".join(p.get("text", "") for p in parts if p.get("type") == "input_text")


class LiveSidebandModel(RealtimeModel):
    """One call's sideband connection, speaking the Live protocol; see the module docstring."""

    def __init__(
        self,
        *,
        session_id: str,
        live: BuiltLive,
        agents: Mapping[str, RealtimeAgent[Any]],
        tap: FrameTap | None = None,
        policy: ReattachPolicy | None = None,
        observer: ControlObserver | None = None,
        takeover: Takeover | None = None,
    ) -> None:
        self.session_id = session_id
        self._policy = policy or ReattachPolicy()
        self._observer = observer
        self._takeover = takeover
        self._live = live
        self._responses = live.settings.backend_model is not None
        self._agents = {str(a.instructions): a for a in agents.values()}
        self._tap = tap
        self._listeners: list[RealtimeModelListener] = []
        self.connection: SidebandConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._turns = TurnTracker(live.settings.turn_gap, time.monotonic)
        self._backend = BackendCalls()
        self._interrupted: set[str] = set()
        self._delegation: str | None = None
        """The delegation (prompt + tools) last sent, to skip updates that change nothing."""
        self._delegation_update: dict[str, Any] | None = None
        """The last delegation sent with ``session.update``: sent again after a reattach."""
        self.closed_event: dict[str, Any] | None = None
        """The ``session.closed`` event, once received: the session is over."""

    # ---- RealtimeModel ------------------------------------------------------------------

    def add_listener(self, listener: RealtimeModelListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: RealtimeModelListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def connect(self, options: RealtimeModelConfig) -> None:
        """Attach to the accepted session. Nothing is sent: the accept configured it, and a
        sideband must never send ``session.start`` or audio."""
        url = options.get("url")
        api_key = options.get("api_key")
        if not isinstance(url, str) or not isinstance(api_key, str):
            raise ValueError("the Live sideband needs a url and an api_key")
        initial = options.get("initial_model_settings") or {}
        self._delegation = self._delegation_key(initial)
        await self._emit(RealtimeModelConnectionStatusEvent(status="connecting"))
        connection = SidebandConnection(
            session_id=self.session_id,
            url=url,
            api_key=api_key,
            policy=self._policy,
            tap=self._tap,
            observer=self._observer,
            held=self._takeover is not None and self._takeover.held,
        )
        connection.on_reattached = self._reattached
        await connection.open(confirm=self._takeover is not None)
        self.connection = connection
        if self._takeover is not None:
            # Taking over a call accepted elsewhere: what the other instance handled is not
            # handled again, and the session gets the current agent's delegation (this
            # instance's view of the call starts here).
            connection.remember(list(self._takeover.seen))
            if self._responses:
                self._delegation_update = self._update_for(initial)
                update = {"delegation": self._delegation_update}
                await connection.send({"type": "session.update", "session": update})
        self._reader = asyncio.create_task(
            self._read(connection), name=f"sideband:{self.session_id}"
        )
        await self._emit(RealtimeModelConnectionStatusEvent(status="connected"))

    async def _reattached(self, send_first: SendFirst) -> None:
        """Control is back: the session gets the current agent's delegation again (whatever
        the server kept, and for an instance taking the call over, what it never had)."""
        if self._responses and self._delegation_update is not None:
            update = {"delegation": self._delegation_update}
            await send_first({"type": "session.update", "session": update})

    async def send_event(self, event: RealtimeModelSendEvent) -> None:
        if isinstance(event, RealtimeModelSendToolOutput):
            await self._tool_output(event)
        elif isinstance(event, RealtimeModelSendSessionUpdate):
            await self._session_update(dict(event.session_settings))
        elif isinstance(event, RealtimeModelSendUserInput):
            await self._user_input(_text_of(event.user_input))
        elif isinstance(event, RealtimeModelSendInterrupt):
            await self._interrupt(event)
        elif isinstance(event, RealtimeModelSendRawMessage):
            await self._send({"type": event.message["type"], **event.message.get("other_data", {})})
        elif isinstance(event, RealtimeModelSendAudio):
            log.warning(
                "audio is never sent on a Live sideband", extra={"call_id": self.session_id}
            )

    @property
    def pending_tool_calls(self) -> int:
        """Delegated function calls handed to the session that still wait for an output."""
        return self._backend.pending

    async def send_event_if(self, event: RealtimeModelSendEvent, send_if: Any) -> bool:
        if not send_if():
            return False
        await self.send_event(event)
        return True

    async def close(self) -> None:
        """Detach. Closing a sideband releases only this observer, not the call."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()

    # ---- what we send -------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        if self.connection is None:
            raise ConnectionError("the Live sideband is not connected")
        await self.connection.send(message)

    def _append(self, content: str) -> dict[str, Any]:
        return {
            "type": "session.instructions.append",
            "delegation_id": None,
            "content": content[:MAX_APPEND_CHARS],
        }

    async def _tool_output(self, event: RealtimeModelSendToolOutput) -> None:
        call_id = event.tool_call.call_id
        await self._send(
            {
                "type": "response.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": event.output,
                },
            }
        )
        respond = self._backend.output_sent(call_id)
        if respond or (respond is None and event.start_response):
            await self._respond()

    async def _respond(self) -> None:
        """``response.create``: the backend answers, and what the agent says next is a new
        turn (the one "hang up after the goodbye" waits for)."""
        await self._send({"type": "response.create"})
        for event in self._turns.new_response():
            await self._emit(event)

    def _update_for(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The sparse delegation update that makes the backend this agent's."""
        tools = function_tools(settings.get("tools") or [], settings.get("handoffs") or [])
        instructions = str(settings.get("instructions") or "")
        return backend_update(self._live.settings, instructions, tools)

    @staticmethod
    def _delegation_key(settings: Mapping[str, Any]) -> str:
        tools = function_tools(settings.get("tools") or [], settings.get("handoffs") or [])
        return json.dumps([settings.get("instructions") or "", tools], sort_keys=True)

    async def _session_update(self, settings: dict[str, Any]) -> None:
        """A handoff (or a key press that switches agents): the backend gets the agent's
        prompt and tools; the voice model is told who it now is."""
        key = self._delegation_key(settings)
        if key == self._delegation:
            return
        self._delegation = key
        instructions = str(settings.get("instructions") or "")
        if self._responses:
            delegation = self._update_for(settings)
            self._delegation_update = delegation
            await self._send({"type": "session.update", "session": {"delegation": delegation}})
        agent = self._agents.get(instructions)
        name = agent.name if agent is not None else "a colleague"
        about = f" {agent.handoff_description}" if agent and agent.handoff_description else ""
        await self._send(
            self._append(
                f"You are now {name}, taking over this call.{about} Follow these instructions "
                f"from now on:\n{instructions}"
            )
        )

    async def _user_input(self, text: str) -> None:
        """Something to act on as if the caller said it (a key press, guardrail feedback):
        the backend gets it as a user message when there is one, else the voice model."""
        if not self._responses:
            await self._send(self._append(text))
            return
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await self._send({"type": "response.item.create", "item": item})
        await self._respond()

    async def _interrupt(self, event: RealtimeModelSendInterrupt) -> None:
        """A tripped output guardrail. The words already spoken cannot be unsaid; appending
        instructions is what Live offers to cut the current speech, once per turn."""
        if event.playback_only:
            return  # no audio passes through callserver: nothing to stop playing
        turn = event.response_id or "-"
        if turn in self._interrupted:
            return
        self._interrupted.add(turn)
        await self._send(self._append(STOP_SPEAKING))

    # ---- what we receive ----------------------------------------------------------------

    async def _emit(self, event: RealtimeModelEvent) -> None:
        for listener in list(self._listeners):
            await listener.on_event(event)

    async def _read(self, connection: SidebandConnection) -> None:
        """Read until ``session.closed``, or until the sideband is gone for good (it
        reattaches by itself after a drop); closes turns at their gap."""
        try:
            while self.closed_event is None:
                event = await connection.recv(self._turns.next_deadline())
                if event is not None:
                    await self._frame(event)
                for turn_event in self._turns.due():
                    await self._emit(turn_event)
        except StreamOver:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sideband reader failed", extra={"call_id": self.session_id})
        for event in self._turns.close_all():
            await self._emit(event)
        await self._emit(RealtimeModelConnectionStatusEvent(status="disconnected"))
        await self._emit(RealtimeModelEndOfStreamEvent())

    async def _frame(self, message: dict[str, Any]) -> None:
        events: list[RealtimeModelEvent] = [RealtimeModelRawServerEvent(data=message)]
        kind = message.get("type")
        delta = message.get("delta")
        if kind == "session.output_transcript.delta" and isinstance(delta, str):
            events += self._turns.output(delta)
        elif kind == "session.input_transcript.delta" and isinstance(delta, str):
            events += self._turns.input(delta)
        elif kind == "response.event":
            step = self._backend.event(message)
            events += step.events
            if step.respond:
                await self._respond()
        elif kind == "session.delegation.created":
            await self._delegation_created(message)
        elif kind == "error":
            events.append(RealtimeModelErrorEvent(error=message.get("error")))
        elif kind == "session.closed":
            self.closed_event = message
        for event in events:
            await self._emit(event)

    async def _delegation_created(self, message: dict[str, Any]) -> None:
        delegation = message.get("delegation") or {}
        if delegation.get("target") == "client" and isinstance(delegation.get("id"), str):
            # No backend of ours handles client delegations (a graph with tools delegates
            # to Responses): release it so the voice model does not wait for an answer.
            await self._send(
                {
                    "type": "session.thinking.append",
                    "delegation_id": delegation["id"],
                    "content": NO_CLIENT_WORK,
                }
            )
