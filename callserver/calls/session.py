"""One agents-SDK realtime session attached to one accepted call.

The runner connects ``OpenAIRealtimeSIPModel`` to the call's control websocket, optionally
has the agent speak first, and consumes every session event into the call record. It does
not decide how a call ends: it returns why its event stream stopped, and the call manager's
one end path does the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeSession, RealtimeSessionEvent
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from callserver.calls import sdk
from callserver.calls.dtmf import CallControlsLike, CallKeypadActions, Keypad
from callserver.calls.idle import IdleWatch
from callserver.calls.records import CallRecord, ToolCall
from callserver.graph.context import CallToolContext
from callserver.metrics import Metrics
from callserver.records.recorder import NULL_RECORDER, CallRecorder

log = logging.getLogger(__name__)

RawListener = Callable[[dict[str, Any]], None]
MAX_TURNS = 500
MAX_TURN_CHARS = 4000


class SessionEnded(Exception):
    """The session's stream stopped; ``reason`` says why (for the end path)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallSession:
    """Runs the SDK session for one call until its event stream stops."""

    def __init__(
        self,
        *,
        record: CallRecord,
        built: Any,
        context: CallToolContext,
        url: str,
        api_key: str,
        raw_listeners: list[RawListener],
        metrics: Metrics,
        recorder: CallRecorder = NULL_RECORDER,
        on_idle: Callable[[], None] | None = None,
        controls: CallControlsLike | None = None,
    ) -> None:
        self._on_idle = on_idle
        self._controls = controls
        self._metrics = metrics
        self._recorder = recorder
        self._record = record
        self._built = built
        self._context = context
        self._url = url
        self._api_key = api_key
        self._raw_listeners = raw_listeners
        self.session: RealtimeSession | None = None
        self._open_tools: dict[str, list[ToolCall]] = {}

    async def run(self) -> str:
        """Connect, consume events, and return the end reason when the stream stops.

        Cancellation (our end path) propagates; the ``async with`` closes the SDK session,
        which cancels and awaits its tool and guardrail tasks.
        """
        built = self._built
        tap = None if self._recorder is NULL_RECORDER else self._recorder.record
        model = sdk.make_model(built.model, tap)
        runner = sdk.make_runner(built.starting_agent, model, built.run_config)
        config = sdk.model_config(
            call_id=self._record.call_id,
            url=self._url,
            api_key=self._api_key,
            settings=built.model_settings,
        )
        session = await runner.run(context=self._context, model_config=config)
        try:
            await session.__aenter__()
        except Exception as exc:
            log.error(
                "session connect failed: %s",
                type(exc).__name__,
                extra={"call_id": self._record.call_id},
            )
            await session.close()
            return "connect_failed"
        self.session = session
        idle_task: asyncio.Task[None] | None = None
        keypad_task: asyncio.Task[None] | None = None
        try:
            self._record.visit(built.starting_agent.name)
            idle_s = built.limits.idle_timeout_s
            if idle_s and self._on_idle is not None:
                watch = IdleWatch(
                    idle_s, prompt=self.say, end=self._on_idle, call_id=self._record.call_id
                )
                self._raw_listeners.append(watch.on_server_event)
                idle_task = asyncio.create_task(watch.run(), name=f"idle:{self._record.call_id}")
            keypad_task = self._start_keypad()
            if built.greeting:
                await self.say(built.greeting)
            try:
                async for event in session:
                    self._on_event(event)
            except Exception as exc:
                # The SDK raises the websocket's close (1006 and friends) from the iterator:
                # for a SIP call that is the caller hanging up.
                log.info(
                    "session stream stopped: %s",
                    type(exc).__name__,
                    extra={"call_id": self._record.call_id},
                )
            return "caller_hangup"
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
        plan = getattr(self._built, "dtmf", None)
        if plan is None or not plan.enabled or self._controls is None:
            return None
        actions = CallKeypadActions(
            agents=self._built.agents,
            switch_agent=self.switch_agent,
            send_message=self.send_message,
            controls=self._controls,
        )
        keypad = Keypad(plan, actions, call_id=self._record.call_id)
        self._raw_listeners.append(keypad.on_server_event)
        return asyncio.create_task(keypad.run(), name=f"dtmf:{self._record.call_id}")

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
        """Ask the model for a response now (greetings, prompts): a raw ``response.create``."""
        if self.session is None:
            return
        await self.session.model.send_event(
            RealtimeModelSendRawMessage(
                message={
                    "type": "response.create",
                    "other_data": {"response": {"instructions": instructions}},
                }
            )
        )

    def _on_event(self, event: RealtimeSessionEvent) -> None:
        record = self._record
        call_id = record.call_id
        if event.type == "raw_model_event":
            data = event.data
            if data.type == "raw_server_event" and isinstance(data.data, dict):
                self._on_raw(data.data)
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
            self._recorder.record("guardrail", {"agent": self._record.current_agent})
            log.warning("output guardrail tripped", extra={"call_id": call_id})
        elif event.type == "error":
            record.errors.append(str(event.error)[:200])
            log.warning("session error: %s", str(event.error)[:200], extra={"call_id": call_id})

    def _add_turn(self, role: str, text: object, item_id: object) -> None:
        """Keep what was said (bounded per call) for the post-call event."""
        transcript = self._record.transcript
        if not isinstance(text, str) or not text or len(transcript) >= MAX_TURNS:
            return
        transcript.append(
            {
                "role": role,
                "agent": self._record.current_agent if role == "agent" else None,
                "text": text[:MAX_TURN_CHARS],
                "at": round(time.monotonic() - self._record.created_mono, 3),
                "item_id": item_id if isinstance(item_id, str) else None,
            }
        )

    def _on_raw(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "response.done":
            usage = (message.get("response") or {}).get("usage") or {}
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                value = usage.get(key)
                if isinstance(value, int):
                    self._record.usage[key] = self._record.usage.get(key, 0) + value
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._add_turn("caller", message.get("transcript"), message.get("item_id"))
        elif kind == "response.output_audio_transcript.done":
            self._add_turn("agent", message.get("transcript"), message.get("item_id"))
        elif kind == "error":
            code = (message.get("error") or {}).get("code")
            self._record.errors.append(str(code))
            self._metrics.session_error(str(code) if code else None)
        for listener in self._raw_listeners:
            listener(message)
