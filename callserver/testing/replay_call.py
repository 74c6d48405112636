"""Replaying one cassette against a running callserver: the fake's side of the conversation.

The recorded server events are sent back in order, each one only once every client event
recorded before it has been seen again (causal pacing: what the client sent before a server
event cannot have depended on it, so the replayed client will send it again unprompted).
Client events are matched, order-insensitively, against the recorded ones that are still
unmatched; the first one that matches nothing, or an expected one that never comes, is a
divergence and stops the replay of this call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from callserver.records.cassette_reader import Cassette, Entry
from callserver.testing import replay_match as rm
from callserver.testing.fake_realtime import FakeConnection
from callserver.testing.fake_sideband import FakeSideband
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
        self.drops: set[int] = _drop_positions(cassette.entries)
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
                if _starts_turn(event):
                    turn += 1
                elif (call := _function_call(event)) is not None:
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
            args = _parsed(entry.data.get("arguments"))
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
        wanted = _parsed(arguments)
        for index, (args, output) in enumerate(outputs):
            if args == wanted:
                del outputs[index]
                return output
        recorded_calls = [a for n, a in self.calls.values() if n == name]
        if any(_parsed(a) == wanted for a in recorded_calls):
            await asyncio.Event().wait()  # recorded as still running when the call ended
        t = self.ws[-1].t if self.ws else 0.0
        self.diverge(
            t,
            self._turn_now(),
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
            self.diverge(t, self._turn_now(), f"unexpected {got} after the recorded ones")
            return
        same = [e for e in open_ if _shape(e.event) == _shape(event)]
        best = same[0] if same else open_[0]
        wanted = rm.describe(best.event, self.calls)
        if not same:
            self.diverge(best.t, best.turn, f"expected {wanted}, got {got}")
            return
        # The same kind of event with other content: name it, then the diff.
        self._config_divergence(
            best.t,
            best.turn,
            best.normalized,
            normalized,
            agent=best.agent,
            where=f"its {best.event.get('type')}",
            otherwise=f"{wanted} differs from the recording",
        )

    def _config_divergence(
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

    def _turn_now(self) -> int:
        """The turn of the last server event sent (responses created so far)."""
        return self._turn

    def _turn_at_t(self, t: float) -> int:
        return sum(
            1 for e in self.ws if e.kind == "ws_in" and e.t <= t and _starts_turn(e.data["event"])
        )

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
            if _our_own_close(event):
                break  # our hangup closed it; the fake's hangup answers with it again
            if not await self._wait_matched(position, conn):
                return
            if _starts_turn(event):
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
            if entry.kind == "ws_in" and _starts_turn(entry.data["event"]):
                turn += 1
        return turn

    # -- after the call -------------------------------------------------------------------------

    def check_rest(self, actual: list[tuple[str, Any]]) -> None:
        """Compare REST attempts (action, body) with the recorded ones, in order."""
        # Attempts that never got an answer (connect errors, timeouts) cannot be replayed.
        recorded = [e for e in self.cassette.of("rest") if e.data.get("status") is not None]
        # After a divergence the call was cut short on purpose: only what came before counts.
        limit = min((d.t for d in self.divergences), default=float("inf"))
        for index, entry in enumerate(recorded):
            if entry.t > limit:
                return
            action = entry.data["action"]
            turn = self._turn_at_t(entry.t)
            expected = rm.normalize(entry.data.get("request"), self.cassette.call_id)
            if index >= len(actual):
                self.diverge(entry.t, turn, f"expected REST {action}, but callserver sent none")
                return
            got_action, body = actual[index]
            if got_action != action:
                self.diverge(entry.t, turn, f"expected REST {action}, got REST {got_action}")
                return
            normalized = rm.normalize(body, self.call_id)
            if not rm.matches(expected, normalized):
                self._config_divergence(
                    entry.t,
                    turn,
                    expected,
                    normalized,
                    agent=self.story.start_agent,
                    where=f"the REST {action} body: the session the call starts with",
                    otherwise=f"REST {action} body differs",
                )
                return
        for got_action, _ in actual[len(recorded) :] if not self.failed else []:
            last = recorded[-1].t if recorded else 0.0
            self.diverge(last, self._turn_now(), f"unexpected REST {got_action}")
            return

    def check_end(self, reason: str | None) -> None:
        expected = self.end_reason
        if expected is not None and reason != expected:
            end = self.cassette.first("end")
            self.diverge(
                end.t if end else 0.0,
                self._turn_now(),
                f"expected the call to end with {expected}, it ended with {reason}",
            )


def _parsed(arguments: Any) -> Any:
    """Tool arguments compared as JSON values, so whitespace and key order do not matter."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments or "{}")
        except ValueError:
            return arguments
    return arguments


def _drop_positions(entries: list[Entry]) -> set[int]:
    """For each recorded ``control: lost``, the index (among ws frames) of the next frame."""
    positions: set[int] = set()
    count = 0
    for entry in entries:
        if entry.kind in ("ws_in", "ws_out"):
            count += 1
        elif entry.kind == "control" and entry.data.get("event") == "lost":
            positions.add(count)
    return positions


def _our_own_close(event: dict[str, Any]) -> bool:
    """A Live ``session.closed`` that callserver's own hangup caused."""
    return event.get("type") == "session.closed" and event.get("reason") == "close_requested"


def _starts_turn(event: dict[str, Any]) -> bool:
    """A new model turn: a Realtime response, or a Live delegation to the backend."""
    return event.get("type") in ("response.created", "session.delegation.created")


def _function_call(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """(call id, tool name, arguments) of a server event that calls a tool, on either
    engine: Realtime's ``response.function_call_arguments.done``, or a Live backend's
    ``response.output_item.done`` function_call item nested in a ``response.event``."""
    if event.get("type") == "response.function_call_arguments.done":
        fields: dict[str, Any] = event
    elif event.get("type") == "response.event":
        inner = event.get("event") or {}
        fields = inner.get("item") or {} if inner.get("type") == "response.output_item.done" else {}
        if fields.get("type") != "function_call":
            return None
    else:
        return None
    return str(fields.get("call_id")), str(fields.get("name")), str(fields.get("arguments") or "")


def _shape(event: dict[str, Any]) -> tuple[Any, Any]:
    return event.get("type"), (event.get("item") or {}).get("type")
