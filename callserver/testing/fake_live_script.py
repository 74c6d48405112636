"""The scripted model and caller of the fake GPT-Live service: what a test makes happen on
a session's sidebands (speech, delegated function calls, DTMF, usage, a hangup).

A mixin of :class:`~callserver.testing.fake_live.FakeLive`, so tests keep calling
``fake.live.agent_says(...)``; it only builds events and hands them to ``broadcast``, which
checks and fans them out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from callserver.testing import live_events as le
from callserver.testing.fake_live_rules import Refused
from callserver.testing.fake_live_session import Event, FakeLiveSession

if TYPE_CHECKING:
    from callserver.testing.fake_live import FakeLive

__all__ = ["MS_PER_CHAR", "LiveScript", "ResponseHandler"]

MS_PER_CHAR = 60
"""Session timeline advance per transcript character (about natural speech)."""

ResponseHandler = Callable[["FakeLive", FakeLiveSession, str], Awaitable[None]]
"""Scripts the backend's answer to a ``response.create`` (gets the new response id)."""


class LiveScript:
    """Scripting methods over the sessions of the :class:`FakeLive` they are mixed into."""

    sessions: dict[str, FakeLiveSession]
    on_response_create: ResponseHandler | None

    if TYPE_CHECKING:

        async def broadcast(self, session: FakeLiveSession, event: Event) -> None: ...

        async def close_session(
            self, session_id: str, reason: str, *, after: float = 0.0
        ) -> None: ...

    async def _speak(self, session_id: str, text: str, parts: int, builder: Any) -> None:
        session = self.sessions[session_id]
        words = text.split(" ")
        size = max(1, -(-len(words) // max(parts, 1)))
        chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        for index, chunk in enumerate(chunks):
            delta = chunk if index == 0 else " " + chunk
            start = session.clock_ms
            session.clock_ms += max(1, len(delta)) * MS_PER_CHAR
            await self.broadcast(session, builder(delta, start, session.clock_ms))

    async def agent_says(self, session_id: str, text: str, *, parts: int = 2) -> None:
        """The voice model speaks ``text``: output transcript fragments."""
        await self._speak(session_id, text, parts, le.output_transcript)

    async def caller_says(self, session_id: str, text: str, *, parts: int = 2) -> None:
        """The caller speaks ``text``: input transcript fragments."""
        await self._speak(session_id, text, parts, le.input_transcript)

    async def delegate(
        self,
        session_id: str,
        calls: list[tuple[str, dict[str, Any]]],
        *,
        call_ids: list[str] | None = None,
    ) -> list[str]:
        """The voice model delegates to the Responses backend, which calls functions:
        ``calls`` are (name, arguments). Returns their call ids."""
        session = self.sessions[session_id]
        delegation_id, response_id = le.new_id("item"), le.new_id("resp")
        ids = call_ids or [le.new_id("call") for _ in calls]
        await self.broadcast(
            session,
            le.delegation_created(delegation_id, "responses", session.clock_ms, response_id),
        )
        await self.broadcast(
            session,
            le.response_event(delegation_id, le.backend_response(response_id, "in_progress")),
        )
        for index, ((name, arguments), call_id) in enumerate(zip(calls, ids, strict=True)):
            session.calls[call_id] = response_id
            item = le.function_call_item(
                name, arguments, call_id, output_index=index, sequence=index + 1
            )
            await self.broadcast(session, le.response_event(delegation_id, item))
        usage = {"input_tokens": 120, "output_tokens": 20, "total_tokens": 140}
        done = le.backend_response(response_id, "completed", usage=usage, sequence=len(calls) + 1)
        await self.broadcast(session, le.response_event(delegation_id, done))
        return ids

    async def continue_backend(self, session: FakeLiveSession) -> None:
        """``response.create``: refused while a function call lacks its output; otherwise a
        new backend response (scripted by ``on_response_create``, else empty)."""
        missing = session.pending_calls()
        if missing:
            raise Refused(
                "invalid_request_error", f"No tool output found for function call {missing[0]}."
            )
        answered = {session.calls[c] for c in session.outputs}
        session.continued.extend(sorted(answered - set(session.continued)))
        response_id = le.new_id("resp")
        await self.broadcast(
            session, le.response_event(None, le.backend_response(response_id, "in_progress"))
        )
        if self.on_response_create is not None:
            await self.on_response_create(self, session, response_id)  # type: ignore[arg-type]
        done = le.backend_response(response_id, "completed", sequence=1)
        await self.broadcast(session, le.response_event(None, done))

    async def delegate_to_client(self, session_id: str) -> str:
        """A client delegation (no task text, by design of the protocol); returns its id."""
        session = self.sessions[session_id]
        delegation_id = le.new_id("item")
        session.client_delegations.add(delegation_id)
        await self.broadcast(
            session, le.delegation_created(delegation_id, "client", session.clock_ms)
        )
        return delegation_id

    async def press(self, session_id: str, key: str) -> None:
        """The caller presses a key (SIP DTMF)."""
        await self.broadcast(self.sessions[session_id], le.dtmf_received(key))

    async def report_usage(self, session_id: str) -> None:
        session = self.sessions[session_id]
        await self.broadcast(session, le.usage_updated(session.seconds))

    async def caller_hangs_up(self, session_id: str) -> None:
        """The caller hangs up: ``session.closed`` with ``remote_hangup``."""
        await self.close_session(session_id, "remote_hangup")
