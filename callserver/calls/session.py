"""One agents-SDK realtime session attached to one accepted call, on any engine.

The runner connects the engine's SDK model (``EngineCall.model``) to the call's control
connection, optionally has the agent speak first, and consumes every session event into the
call record. It does not decide how a call ends: it returns why its event stream stopped,
and the call manager's one end path does the rest. Nothing here knows a wire protocol: raw
server events reach it only as the engine's :class:`~callserver.engines.signals.Signal`\\ s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession, RealtimeSessionEvent
from agents.realtime.model_events import RealtimeModelOtherEvent, RealtimeModelRawServerEvent

from callserver.calls.dtmf import CallControlsLike, CallKeypadActions, Keypad
from callserver.calls.idle import IdleWatch
from callserver.calls.records import CallRecord, ToolCall
from callserver.engines.base import (
    ControlEvent,
    Engine,
    EngineCall,
    PostCallJob,
    StreamEnd,
    Takeover,
)
from callserver.engines.signals import Signal
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph
from callserver.metrics import Metrics
from callserver.records.recorder import NULL_RECORDER, CallRecorder

log = logging.getLogger(__name__)

SignalListener = Callable[[Signal], None]
NOT_ATTACHED = "not_attached"
"""A takeover's attach failed: nothing changed, the call is still the other instance's."""
MAX_TURNS = 500
MAX_TURN_CHARS = 4000


class CallSession:
    """Runs the SDK session for one call until its event stream stops."""

    def __init__(
        self,
        *,
        record: CallRecord,
        built: BuiltGraph,
        context: CallToolContext,
        engine: Engine,
        listeners: list[SignalListener],
        metrics: Metrics,
        recorder: CallRecorder = NULL_RECORDER,
        on_idle: Callable[[], None] | None = None,
        controls: CallControlsLike | None = None,
        takeover: Takeover | None = None,
    ) -> None:
        self._on_idle = on_idle
        self._controls = controls
        self._metrics = metrics
        self._recorder = recorder
        self._record = record
        self._built = built
        self._context = context
        tap = None if recorder is NULL_RECORDER else recorder.record
        self._takeover = takeover
        self._engine_call: EngineCall = engine.attach(
            record.engine_id, built, tap, self.on_control, takeover
        )
        self.attached = asyncio.Event()
        """Set once the session is attached to the call, or failed to (``attach_error``)."""
        self.attach_error: BaseException | None = None
        self._listeners = listeners
        self.session: RealtimeSession | None = None
        self._open_tools: dict[str, list[ToolCall]] = {}

    async def run(self) -> StreamEnd:
        """Connect, consume events, and return why the stream stopped.

        Cancellation (our end path) propagates; closing the SDK session cancels and awaits
        its tool and guardrail tasks.
        """
        built = self._built
        engine_call = self._engine_call
        runner = RealtimeRunner(
            self._first_agent(), model=engine_call.model, config=built.run_config
        )
        session = await runner.run(context=self._context, model_config=engine_call.model_config)
        try:
            await session.__aenter__()
        except Exception as exc:
            log.error(
                "session connect failed: %s",
                type(exc).__name__,
                extra={"call_id": self._record.call_id},
            )
            self.attach_error = exc
            self.attached.set()
            await session.close()
            if self._takeover is not None:
                return StreamEnd(NOT_ATTACHED, hangup=False)  # the call is not ours
            return engine_call.connect_failed(exc)
        self.session = session
        self.attached.set()
        idle_task: asyncio.Task[None] | None = None
        keypad_task: asyncio.Task[None] | None = None
        try:
            self._record.visit(self._first_agent().name)
            idle_s = built.limits.idle_timeout_s
            if idle_s and self._on_idle is not None:
                watch = IdleWatch(
                    idle_s, prompt=self.say, end=self._on_idle, call_id=self._record.call_id
                )
                self._listeners.append(watch.on_signal)
                idle_task = asyncio.create_task(watch.run(), name=f"idle:{self._record.call_id}")
            keypad_task = self._start_keypad()
            greeting = built.greeting if self._takeover is None else None  # said already
            if greeting and (event := engine_call.greeting(greeting)) is not None:
                await session.model.send_event(event)
            error: BaseException | None = None
            try:
                async for event in session:
                    self._on_event(event)
            except Exception as exc:
                error = exc
                log.info(
                    "session stream stopped: %s",
                    type(exc).__name__,
                    extra={"call_id": self._record.call_id},
                )
            return engine_call.stream_end(error)
        finally:
            self.session = None
            for task in (idle_task, keypad_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await session.close()

    def _start_keypad(self) -> asyncio.Task[None] | None:
        """DTMF handling per the graph's ``dtmf:`` map (none without one, or without call
        controls to transfer and end with)."""
        plan = self._built.dtmf
        if not plan.enabled or self._controls is None:
            return None
        actions = CallKeypadActions(
            agents=self._built.agents,
            switch_agent=self.switch_agent,
            send_message=self.send_message,
            controls=self._controls,
        )
        record = self._record
        keypad = Keypad(
            plan,
            actions,
            call_id=record.call_id,
            pending=record.keypad_pending if self._takeover is not None else "",
            on_pending=lambda keys: setattr(record, "keypad_pending", keys),
        )
        self._listeners.append(keypad.on_signal)
        return asyncio.create_task(keypad.run(), name=f"dtmf:{self._record.call_id}")

    def _first_agent(self) -> RealtimeAgent[Any]:
        """The agent the session starts with: the graph's starting agent, or for a call
        taken over mid-call, the agent it was with (agent names are unique per graph)."""
        if self._takeover is not None and self._record.current_agent:
            for agent in self._built.agents.values():
                if agent.name == self._record.current_agent:
                    return agent
        return self._built.starting_agent

    @property
    def engine_call(self) -> EngineCall:
        return self._engine_call

    def on_control(self, event: ControlEvent, gap_s: float) -> None:
        """The engine's control connection dropped (``lost``) or the drop ended: counted on
        the record and in metrics (the engine reattaches by itself)."""
        record = self._record
        self._recorder.record("control", {"event": event, "gap_s": round(gap_s, 3)})
        if event == "lost":
            log.warning("control connection lost", extra={"call_id": record.call_id})
            return
        record.control_gap_s += gap_s
        if event == "back":
            record.reattaches += 1
        self._metrics.control_event(record.engine, event, gap_s)

    def post_call_job(self) -> PostCallJob | None:
        """The engine's work for after the call (see ``EngineCall.post_call_job``)."""
        return self._engine_call.post_call_job()

    async def switch_agent(self, agent: RealtimeAgent[Any]) -> None:
        """Make ``agent`` the active one (a handoff not chosen by the model, e.g. a key
        press). The SDK emits no handoff event for this, so it is recorded here."""
        record = self._record
        previous = record.current_agent
        if self.session is None or previous == agent.name:
            return  # already there (agent names are unique in a graph): not a handoff
        await self.session.update_agent(agent)
        record.handoffs += 1
        self._metrics.handoff(record.graph)
        self._recorder.record("handoff", {"from": previous, "to": agent.name})
        record.visit(agent.name)
        log.info(
            "handoff %s -> %s (keypad)", previous, agent.name, extra={"call_id": record.call_id}
        )

    async def send_message(self, text: str) -> None:
        """Tell the agent something as if the caller said it; it answers (a new response)."""
        if self.session is not None:
            await self.session.send_message(text)

    async def say(self, instructions: str) -> None:
        """Ask the model to speak now (greetings, prompts), the engine's way."""
        if self.session is not None:
            await self.session.model.send_event(self._engine_call.say(instructions))

    def _on_event(self, event: RealtimeSessionEvent) -> None:
        record = self._record
        call_id = record.call_id
        if event.type == "raw_model_event":
            data = event.data
            if isinstance(data, RealtimeModelRawServerEvent) and isinstance(data.data, dict):
                for signal in self._engine_call.signals(data.data):
                    self._on_signal(signal)
            elif isinstance(data, RealtimeModelOtherEvent) and isinstance(data.data, Signal):
                self._on_signal(data.data)  # an engine's own inference (e.g. Live turns)
            return
        if event.type == "agent_start":
            record.visit(event.agent.name)
        elif event.type == "handoff":
            record.handoffs += 1
            self._metrics.handoff(record.graph)
            self._recorder.record(
                "handoff", {"from": event.from_agent.name, "to": event.to_agent.name}
            )
            record.visit(event.to_agent.name)
            log.info(
                "handoff %s -> %s",
                event.from_agent.name,
                event.to_agent.name,
                extra={"call_id": call_id},
            )
        elif event.type == "tool_start":
            name = getattr(event.tool, "name", "?")
            tool_call = ToolCall(name=name, agent=event.agent.name, started_at=time.monotonic())
            record.tool_calls.append(tool_call)
            self._open_tools.setdefault(name, []).append(tool_call)
            log.info("tool %s started", name, extra={"call_id": call_id})
        elif event.type == "tool_end":
            name = getattr(event.tool, "name", "?")
            pending = self._open_tools.get(name)
            if pending:
                tool_call = pending.pop(0)
                tool_call.duration_s = time.monotonic() - tool_call.started_at
                tool_call.outcome = "ok"
                self._metrics.tool_finished(name, "ok", tool_call.duration_s)
                self._recorder.record(
                    "tool",
                    {
                        "name": name,
                        "agent": event.agent.name,
                        "arguments": event.arguments,
                        "output": str(event.output),
                        "duration_s": round(tool_call.duration_s, 6),
                    },
                )
            log.info("tool %s finished", name, extra={"call_id": call_id})
        elif event.type == "guardrail_tripped":
            record.guardrail_trips += 1
            self._metrics.guardrail_tripped(record.graph)
            self._recorder.record("guardrail", {"agent": record.current_agent})
            log.warning("output guardrail tripped", extra={"call_id": call_id})
        elif event.type == "error":
            record.errors.append(str(event.error)[:200])
            log.warning("session error: %s", str(event.error)[:200], extra={"call_id": call_id})

    def _add_turn(self, role: str, text: str | None, item_id: str | None) -> None:
        """Keep what was said (bounded per call) for the post-call event."""
        transcript = self._record.transcript
        if not text or len(transcript) >= MAX_TURNS:
            return
        transcript.append(
            {
                "role": role,
                "agent": self._record.current_agent if role == "agent" else None,
                "text": text[:MAX_TURN_CHARS],
                "at": round(time.monotonic() - self._record.created_mono, 3),
                "item_id": item_id,
            }
        )

    def _on_signal(self, signal: Signal) -> None:
        kind = signal.kind
        if kind == "usage" and signal.usage:
            usage = self._record.usage
            for key, value in signal.usage.items():
                usage[key] = value if signal.cumulative else usage.get(key, 0) + value
        elif kind == "caller_said":
            self._add_turn("caller", signal.text, signal.ref)
        elif kind == "agent_said":
            self._add_turn("agent", signal.text, signal.ref)
        elif kind == "error":
            self._record.errors.append(str(signal.text))
            self._metrics.session_error(signal.text)
        for listener in self._listeners:
            listener(signal)
