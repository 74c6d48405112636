"""Replaying one cassette against a running callserver: the fake's side of the conversation.

The recorded server events are sent back in order, each one only once every client event
recorded before it has been seen again (causal pacing: what the client sent before a server
event cannot have depended on it, so the replayed client will send it again unprompted).
Client events are matched, order-insensitively, against the recorded ones that are still
unmatched; the first one that matches nothing, or an expected one that never comes, is a
divergence and stops the replay of this call.

Reading the recorded events is :mod:`~callserver.testing.replay_events`; the checks once
the call is over are :mod:`~callserver.testing.replay_checks`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from callserver.records.cassette_reader import Cassette, Entry
from callserver.testing import replay_match as rm
from callserver.testing.fake_realtime import FakeConnection
from callserver.testing.fake_sideband import FakeSideband
from callserver.testing.replay_events import (
    drop_positions,
    event_shape,
    function_call,
    our_own_close,
    parsed_arguments,
    starts_turn,
)
from callserver.testing.replay_story import GuardrailCancel, read_story

__all__ = ["CallReplay", "Divergence"]

Connection = FakeConnection | FakeSideband
"""The fake's side of a call's control connection: a Realtime websocket or a Live sideband."""

EXTERNAL_END_REASONS = frozenset(
    {"max_duration", "idle_timeout", "shutdown", "admin_hangup", "control_lost"}
)
"""Ends a replay cannot wait for (timers, operators): the replay ends the call the same way."""
CALLER_END_REASONS = frozenset({"caller_hangup", "caller_gone"})
GUARDRAIL_GRACE_S = 1.0
"""A guardrail's cancel is waited for as long as the recording took, twice, plus this; not
the whole timeout (a missing cancel then shows in about a second, not five)."""


@dataclasses.dataclass(slots=True)
class Divergence:
    """Where the replay stopped matching the recording; ``t`` orders divergences."""

    t: float
    turn: int
    message: str
    details: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        head = f"turn {self.turn}: {self.message}"
        return "\n".join([head, *(f"    {line}" for line in self.details)])


@dataclasses.dataclass(slots=True)
class _Expected:
    position: int
    turn: int
    t: float
    event: dict[str, Any]
    normalized: Any
    matched: bool = False
    agent: str | None = None
    """For a session.update: the agent whose session it is."""
    guardrail: GuardrailCancel | None = None
    """Set when a guardrail trip caused this event."""


class CallReplay:
    """The state of one cassette's replay; fed client events by the replay fake."""

    def __init__(
        self,
        cassette: Cassette,
        call_id: str,
        *,
        timeout: float,
        settle: float,
        start_agent: str | None = None,
    ):
        self.cassette = cassette
        self.story = read_story(cassette, start_agent)
        self.call_id = call_id
        self.timeout = timeout
        self.settle = settle
        self.divergences: list[Divergence] = []
        self.ws: list[Entry] = [e for e in cassette.entries if e.kind in ("ws_in", "ws_out")]
        self.drops: set[int] = drop_positions(cassette.entries)
        """Positions in ``ws`` before which the recorded control connection dropped."""
        self.calls: dict[str, tuple[str, str]] = {}
        self.expected: list[_Expected] = []
        self._tool_outputs: dict[str, list[tuple[Any, str]]] = {}
        self._changed = asyncio.Event()
        self._last_arrival = 0.0
        self._turn = 0
        self._index()

    # -- reading the cassette -----------------------------------------------------------------

    def _index(self) -> None:
        turn = 0
        for position, entry in enumerate(self.ws):
            event = entry.data["event"]
            if entry.kind == "ws_in":
                if starts_turn(event):
                    turn += 1
                elif (call := function_call(event)) is not None:
                    self.calls[call[0]] = (call[1], call[2])
            else:
                normalized = rm.normalize(event, self.cassette.call_id)
                self.expected.append(
                    _Expected(
                        position,
                        turn,
                        entry.t,
                        event,
                        normalized,
                        agent=self.story.agents.get(entry.line),
                        guardrail=self.story.guardrails.get(entry.line),
                    )
                )
        for entry in self.cassette.of("tool"):
            args = parsed_arguments(entry.data.get("arguments"))
            output = str(entry.data.get("output", ""))
            self._tool_outputs.setdefault(str(entry.data["name"]), []).append((args, output))

    @property
    def end_reason(self) -> str | None:
        end = self.cassette.first("end")
        return str(end.data["reason"]) if end else None

    @property
    def failed(self) -> bool:
        return bool(self.divergences)

    def diverge(self, t: float, turn: int, message: str, details: list[str] | None = None) -> None:
        self.divergences.append(Divergence(t, turn, message, details or []))
        self._changed.set()

    # -- tool stubs -----------------------------------------------------------------------------

    async def tool_output(self, name: str, arguments: str) -> str:
        """The recorded output for this call of ``name``; blocks forever (until cancelled) if
        the recorded call never finished, e.g. the caller hung up while it ran."""
        outputs = self._tool_outputs.get(name, [])
        wanted = parsed_arguments(arguments)
        for index, (args, output) in enumerate(outputs):
            if args == wanted:
                del outputs[index]
                return output
        recorded_calls = [a for n, a in self.calls.values() if n == name]
        if any(parsed_arguments(a) == wanted for a in recorded_calls):
            await asyncio.Event().wait()  # recorded as still running when the call ended
        t = self.ws[-1].t if self.ws else 0.0
        self.diverge(
            t,
            self.turn_now(),
            f"tool {name} called with {arguments} but the cassette has no such call",
            [f"recorded calls of {name}: {recorded_calls or 'none'}"],
        )
        return f"[replay: no recorded output for {name} {arguments}]"

    # -- client events --------------------------------------------------------------------------

    def on_client_event(self, event: dict[str, Any]) -> None:
        """Match one client event against the unmatched recorded ones (any order)."""
        self._last_arrival = asyncio.get_running_loop().time()
        self._changed.set()
        if self.failed:
            return
        normalized = rm.normalize(event, self.call_id)
        for expected in self.expected:
            if not expected.matched and rm.matches(expected.normalized, normalized):
                expected.matched = True
                return
        self._unexpected(event, normalized)

    def _unexpected(self, event: dict[str, Any], normalized: Any) -> None:
        open_ = [e for e in self.expected if not e.matched]
        got = rm.describe(event, self.calls)
        if not open_:
            t = self.ws[-1].t if self.ws else 0.0
            self.diverge(t, self.turn_now(), f"unexpected {got} after the recorded ones")
            return
        same = [e for e in open_ if event_shape(e.event) == event_shape(event)]
        best = same[0] if same else open_[0]
        wanted = rm.describe(best.event, self.calls)
        if not same:
            self.diverge(best.t, best.turn, f"expected {wanted}, got {got}")
            return
        # The same kind of event with other content: name it, then the diff.
        self.config_divergence(
            best.t,
            best.turn,
            best.normalized,
            normalized,
            agent=best.agent,
            where=f"its {best.event.get('type')}",
            otherwise=f"{wanted} differs from the recording",
        )

    def config_divergence(
        self,
        t: float,
        turn: int,
        expected: Any,
        actual: Any,
        *,
        agent: str | None,
        where: str,
        otherwise: str,
    ) -> None:
        """A differing session config reads as what happened to the agent's tools first
        ("agent Customer Service lost tool book_appointment"), then any other difference."""
        phrases, exp_rest, act_rest = rm.tool_changes(expected, actual)
        if not phrases:
            whose = [f"(the session of agent {agent})"] if agent else []
            self.diverge(t, turn, otherwise, [*whose, *rm.diff_lines(expected, actual)])
            return
        who = f"agent {agent}" if agent else "the agent"
        details = [f"(in {where})", *rm.diff_lines(exp_rest, act_rest)]
        self.diverge(t, turn, f"{who} {', '.join(phrases)}", details)

    def turn_now(self) -> int:
        """The turn of the last server event sent (responses created so far)."""
        return self._turn

    # -- driving the connection -----------------------------------------------------------------

    async def drive(
        self, conn: Connection, reconnected: Callable[[int], Awaitable[Connection]]
    ) -> None:
        """Play the recorded server events, paced by the client's events. Where the recorded
        control connection dropped, the replay drops it too, at the same point, and goes on
        on the connection callserver reattaches (``reconnected(n)``: the n-th connection)."""
        skipped_greeting = False
        connections = 1
        for position, entry in enumerate(self.ws):
            if position in self.drops:
                if not await self._wait_matched(position, conn):
                    return
                await conn.drop()
                try:
                    conn = await reconnected(connections)
                except AssertionError:
                    self.diverge(entry.t, self._turn_at(position), "callserver did not reattach")
                    return
                connections += 1
                skipped_greeting = False
            if entry.kind != "ws_in":
                continue
            event = entry.data["event"]
            if not skipped_greeting and event.get("type") == "session.created":
                skipped_greeting = True  # the fake greets every connection itself
                continue
            if our_own_close(event):
                break  # our hangup closed it; the fake's hangup answers with it again
            if not await self._wait_matched(position, conn):
                return
            if starts_turn(event):
                self._turn += 1
            self._last_arrival = asyncio.get_running_loop().time()  # settle counts from here too
            try:
                await conn.send(event)
            except (ConnectionError, RuntimeError, OSError, TimeoutError):
                self.diverge(
                    entry.t,
                    self._turn_at(position),
                    f"callserver closed the websocket before {event.get('type')}",
                )
                return
        if await self._wait_matched(len(self.ws), conn):
            await self._settle()

    def _budget(self, expected: _Expected) -> float:
        """How long to wait for a recorded client event to come again."""
        if expected.guardrail is None:
            return self.timeout
        return min(self.timeout, 2 * expected.guardrail.delay_s + GUARDRAIL_GRACE_S)

    async def _wait_matched(self, position: int, conn: Connection) -> bool:
        """Wait until every client event recorded before ``position`` was seen again."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            if self.failed:
                return False
            due = [e for e in self.expected if e.position < position and not e.matched]
            if not due:
                return True
            first = min(due, key=self._budget)
            remaining = started + self._budget(first) - loop.time()
            if remaining <= 0 or conn.closed.is_set():
                if conn.closed.is_set():
                    first = due[0]
                self._missing(first, self._budget(first), closed=conn.closed.is_set())
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))
            except TimeoutError:
                pass

    async def _settle(self) -> None:
        """Give callserver a moment (after the last event either way) to send anything the
        recording does not have, such as the output of a tool that used to hang."""
        loop = asyncio.get_running_loop()
        while not self.failed:
            quiet = loop.time() - self._last_arrival
            if quiet >= self.settle:
                return
            await asyncio.sleep(self.settle - quiet)

    def _missing(self, first: _Expected, waited: float, *, closed: bool) -> None:
        """An expected client event did not come (again)."""
        wanted = rm.describe(first.event, self.calls)
        why = "the websocket closed" if closed else "nothing came"
        guardrail = first.guardrail
        if guardrail is not None and not closed:
            self.diverge(
                first.t,
                first.turn,
                f"{guardrail.guardrail} did not cut the response off: expected {wanted}",
                [
                    f"(the recording sent it {guardrail.delay_s * 1000:.0f} ms after the server "
                    f"event before it; waited {waited:.1f}s)"
                ],
            )
            return
        self.diverge(
            first.t,
            first.turn,
            f"expected {wanted}, but {why}",
            [] if closed else [f"(waited {waited:g}s)"],
        )

    def _turn_at(self, position: int) -> int:
        turn = 0
        for entry in self.ws[:position]:
            if entry.kind == "ws_in" and starts_turn(entry.data["event"]):
                turn += 1
        return turn
