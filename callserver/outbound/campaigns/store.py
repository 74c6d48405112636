"""What a campaign store keeps, and the operations the runner needs from it, atomically.

Two implementations with the same behaviour (``tests/test_campaign_store.py`` runs one suite
on both): SQLite (one instance; every call off the event loop) and Redis (several instances
share a campaign; every decision one Lua script). The guarantees the runner builds on:

- ``claim`` is the only way a row becomes ``dialing``, and it is atomic with the checks that
  allow it (campaign running, fewer than ``max_concurrent`` in flight, the pace's next slot
  reached, the row still pending and due), and durable before it returns: so a row is
  dialed by one instance, once per attempt, and the claim survives ``kill -9``.
- A ``dialing`` row whose owner is gone (the process died mid-attempt) is never dialed again:
  ``recover`` marks it ``unknown`` (a call may have been placed). Retries only ever follow
  an attempt whose outcome is known and retryable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

from callserver.outbound.campaigns.attempt import INTERRUPTED, AttemptResult
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.transitions import TRANSITIONS, TransitionError

__all__ = [
    "CATCH_UP_S",
    "INTERRUPTED",
    "ROW_STATUSES",
    "TRANSITIONS",
    "AttemptResult",
    "CampaignInfo",
    "CampaignState",
    "CampaignStore",
    "Claim",
    "RowState",
    "RowStatus",
    "TransitionError",
    "next_pace_slot",
    "pace_wait",
]
"""``INTERRUPTED``, ``TRANSITIONS`` and ``TransitionError`` moved to ``attempt`` and
``transitions`` (I/O-free rules both stores share) and stay importable from here, with
``AttemptResult`` (what ``finish`` takes), for code that only knows the protocol."""

CampaignState = Literal["running", "paused", "cancelled", "completed"]
RowStatus = Literal["pending", "dialing", "done", "skipped", "cancelled"]
ROW_STATUSES: tuple[str, ...] = ("pending", "dialing", "done", "skipped", "cancelled")


CATCH_UP_S = 2.0


def pace_wait(next_slot: float, last_dial: float, now: float, interval: float) -> float:
    """Seconds until the pace allows the next dial (0: now): its slot has come, and it is
    at least half an interval after the previous dial (so catching up never goes above
    twice the pace)."""
    return max(next_slot - now, last_dial + interval / 2 - now, 0.0)


def next_pace_slot(next_slot: float, now: float, interval: float) -> float:
    """The slot of the dial after one made at ``now`` in the slot ``next_slot``.

    On time or a little late (a busy event loop, a slow disk, a GC pause: less than
    ``max(2 intervals, 2 s)``): one interval later on the pace's grid, so the rate holds
    over the campaign. Later than that (the campaign was idle or paused): start afresh
    from now, rather than burst to make up for the idle time. Time held back by
    ``max_concurrent`` earns nothing: a ``busy`` claim moves the slot up to now.
    """
    if now - next_slot < max(2 * interval, CATCH_UP_S):
        return next_slot + interval
    return now + interval


@dataclasses.dataclass(slots=True)
class RowState:
    row: int
    to: str
    variables: dict[str, str]
    timezone: str | None
    status: str
    attempts: int = 0
    next_at: float | None = None
    outcome: str | None = None
    detail: str | None = None
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """One entry per attempt: {attempt, call_id, outcome, at, error}."""
    owner: str | None = None
    call_id: str | None = None
    """The attempt in flight's call id (``dialing``)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "to": self.to,
            "variables": dict(self.variables),
            "timezone": self.timezone,
            "status": self.status,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "next_at": self.next_at,
            "detail": self.detail,
            "call_id": self.call_id or (self.calls[-1].get("call_id") if self.calls else None),
            "calls": list(self.calls),
        }


@dataclasses.dataclass(slots=True)
class CampaignInfo:
    id: str
    spec: CampaignSpec
    state: str
    reason: str | None
    created_at: float
    updated_at: float
    total: int
    counts: dict[str, int]
    """Rows by status."""
    outcomes: dict[str, int]
    """Finished rows by final outcome, skipped ones by why (dnc, duplicate)."""
    dials: int
    """Attempts started (claims), retries included."""
    in_flight: int

    def as_json(self) -> dict[str, Any]:
        done = sum(self.counts.get(s, 0) for s in ("done", "skipped", "cancelled"))
        return {
            "id": self.id,
            "name": self.spec.name,
            "graph": self.spec.graph,
            "state": self.state,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "total": self.total,
            "finished": done,
            "counts": {s: self.counts.get(s, 0) for s in ROW_STATUSES},
            "outcomes": dict(sorted(self.outcomes.items())),
            "dials": self.dials,
            "in_flight": self.in_flight,
            "settings": self.spec.as_json(),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """What ``claim`` decided: ``ok`` (dial it: ``attempt`` is its number), ``pace`` (the next
    slot is ``wait_s`` away), ``busy`` (max_concurrent in flight), ``not_due``, ``taken``
    (not pending any more), ``stopped`` (the campaign is not running)."""

    result: Literal["ok", "pace", "busy", "not_due", "taken", "stopped"]
    wait_s: float = 0.0
    attempt: int = 0


class CampaignStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(
        self, campaign_id: str, spec: CampaignSpec, rows: list[RowSpec], now: float
    ) -> CampaignInfo: ...

    async def get(self, campaign_id: str) -> CampaignInfo | None: ...

    async def list(self) -> list[CampaignInfo]: ...

    async def running(self) -> list[str]:
        """Ids of running campaigns."""

    async def set_state(
        self, campaign_id: str, state: str, reason: str | None = None
    ) -> CampaignInfo | None:
        """Pause, resume, cancel (pending rows become ``cancelled``), complete; raises
        TransitionError; None for an unknown campaign."""

    async def due(self, campaign_id: str, now: float) -> tuple[RowState | None, float | None]:
        """(the pending row due first, if due by ``now``; the earliest ``next_at`` pending)."""

    async def claim(self, campaign_id: str, row: int, now: float, owner: str) -> Claim: ...

    async def unclaim(self, campaign_id: str, row: int, owner: str) -> None:
        """Give a claimed row back: it was not dialed (no room, nothing placed)."""

    async def defer(self, campaign_id: str, row: int, next_at: float) -> None:
        """A pending row waits until ``next_at`` (outside its calling window)."""

    async def skip(self, campaign_id: str, row: int, why: str) -> None:
        """A pending row is not dialed (``dnc``): final."""

    async def attach_call(self, campaign_id: str, row: int, owner: str, call_id: str) -> None: ...

    async def finish(self, result: AttemptResult) -> None:
        """The attempt ended: pending again at ``result.retry_at``, or done with its
        outcome; nothing if the row is no longer this owner's attempt in flight."""

    async def complete_if_done(self, campaign_id: str) -> bool:
        """Mark a running campaign completed when no row is pending or in flight."""

    async def rows(self, campaign_id: str) -> list[RowState]: ...

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        """This runner is alive (Redis: other instances leave its claims alone)."""

    async def recover(self, owner: str, now: float) -> int:
        """Rows claimed by runners that are gone -> ``unknown``; how many."""
