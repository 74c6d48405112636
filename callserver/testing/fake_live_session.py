"""What the fake GPT-Live service knows about one Live SIP session.

Kept apart from the service so the REST handlers, the sideband rules, the outbound side and
the scripted model can all read and change a session without importing one another.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from callserver.testing import live_events as le
from callserver.testing.fake_calls import Decision, error_body
from callserver.testing.fake_sideband import FakeSideband

__all__ = ["Event", "FakeLiveSession", "Result", "new_session_id", "session_not_found"]

Event = dict[str, Any]
Result = tuple[int, Any]


def new_session_id() -> str:
    """A Live session id shaped like OpenAI's (``live_<hex>``); opaque to callserver."""
    return f"live_{uuid.uuid4().hex}"


def session_not_found(session_id: str) -> Result:
    """The service's answer for an unknown (or, on most actions, ended) session."""
    return 404, error_body(f"Session {session_id} not found", code="session_not_found")


@dataclasses.dataclass
class FakeLiveSession:
    """A Live SIP session as the fake sees it."""

    session_id: str
    decision: Decision
    state: str = "ringing"
    """ringing -> accepted -> ended (or ringing -> ended by a reject); an outbound session:
    dialing -> accepted (answered) -> ended, or dialing -> ended (failed, hung up)."""
    config: dict[str, Any] | None = None
    """The accepted ``session`` config, with every ``session.update`` merged in."""
    ended_by: str | None = None
    close_reason: str | None = None
    reject_status: int | None = None
    refer_target: str | None = None
    accepted_at: float | None = None
    closed_at: float | None = None
    clock_ms: int = 0
    log: list[tuple[float, Event]] = dataclasses.field(default_factory=list)
    sidebands: list[FakeSideband] = dataclasses.field(default_factory=list)
    calls: dict[str, str] = dataclasses.field(default_factory=dict)
    """Delegated function call id -> the backend response that made it."""
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    continued: list[str] = dataclasses.field(default_factory=list)
    """Backend responses continued by a ``response.create``."""
    backend_input: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    updates: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    appends: list[Event] = dataclasses.field(default_factory=list)
    client_delegations: set[str] = dataclasses.field(default_factory=set)
    answered_delegations: set[str] = dataclasses.field(default_factory=set)
    outbound: bool = False
    """Created by an outbound create: ``dialing`` until the callee answers."""

    @property
    def mode(self) -> str:
        delegation = (self.config or {}).get("delegation") or {"type": "client"}
        return str(delegation.get("type", "client"))

    @property
    def open_sidebands(self) -> list[FakeSideband]:
        return [s for s in self.sidebands if not s.closed.is_set()]

    @property
    def seconds(self) -> float:
        if self.accepted_at is None:
            return 0.0
        return float(int((self.closed_at or time.monotonic()) - self.accepted_at))

    def resource(self) -> dict[str, Any]:
        return le.session_resource(self.session_id, self.config)

    def pending_calls(self) -> list[str]:
        return [c for c in self.calls if c not in self.outputs]
