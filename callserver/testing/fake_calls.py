"""Plain records the fake OpenAI keeps: calls, requests, scripted failures.

Kept apart from the server so tests can import and assert on them without caring how the
server is run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CallState",
    "Decision",
    "FakeCall",
    "RecordedRequest",
    "ScriptedRule",
    "error_body",
    "take_rule",
]

CallState = Literal["ringing", "accepted", "ended"]


@dataclass
class RecordedRequest:
    """One request the fake received, as callserver sent it.

    ``status`` is 0 while the request is still being handled (e.g. during a scripted delay),
    so a test can observe an in-flight request. ``errors`` lists schema errors of the body.
    """

    method: str
    path: str
    call_id: str | None
    action: str
    headers: dict[str, str]
    json: Any
    status: int = 0
    at: float = field(default_factory=time.time)
    errors: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """Whether a pending SIP call has been decided, shared by every id it has: one call can
    be announced to the Realtime *and* the Live API, and the first successful accept or
    reject on either decides it ("decision_already_made" for every later one)."""

    made: str | None = None
    """Who decided, e.g. ``live:accept`` or ``realtime:reject``."""

    def take(self, who: str) -> bool:
        if self.made is not None:
            return False
        self.made = who
        return True


@dataclass
class FakeCall:
    """A SIP call as the fake service sees it."""

    call_id: str
    state: CallState = "ringing"
    decision: Decision = field(default_factory=Decision)
    #: The accept body (session config) once accepted.
    session: dict[str, Any] | None = None
    #: Why it ended: "reject", "hangup", "refer", "caller" (caller hung up) or "expired".
    ended_by: str | None = None
    reject_status: int | None = None
    refer_target: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass
class ScriptedRule:
    """A scripted failure or delay; consumed in the order it was added."""

    action: str
    call_id: str | None
    remaining: int
    status: int = 500
    body: Any = None
    seconds: float = 0.0

    def matches(self, action: str, call_id: str | None) -> bool:
        return (
            self.remaining > 0
            and self.action == action
            and (self.call_id is None or self.call_id == call_id)
        )


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The OpenAI REST error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def take_rule(rules: list[ScriptedRule], action: str, call_id: str | None) -> ScriptedRule | None:
    """Consume one use of the first matching rule, if any."""
    for rule in rules:
        if rule.matches(action, call_id):
            rule.remaining -= 1
            return rule
    return None
