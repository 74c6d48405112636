"""How an attempt ended, and what both stores write for it (I/O-free).

``finish`` takes one :class:`AttemptResult` rather than nine positional values: every
field names what it is (the old call sites passed ``None, None`` pairs a swap could not be
seen in), and the rules every store applies to it (when a retry is kept, what the row's
call history records) live here once, so SQLite and Redis cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

INTERRUPTED = "the instance placing this call stopped during the attempt; not retried"
UNKNOWN = "unknown"
"""The outcome of an attempt nobody can tell the end of (a call may have been placed)."""
RETRY_STATES: frozenset[str] = frozenset({"running", "paused"})
"""Campaign states that keep a scheduled retry: a paused campaign resumes with it; a
cancelled or completed one has no pending rows, so the attempt is final."""


def call_entry(
    attempt: int, call_id: str | None, outcome: str, at: float, error: str | None
) -> dict[str, Any]:
    """One entry of a row's ``calls`` history: the same keys in both stores (the Redis
    Lua script writes them too: keep ``redis_scripts._FINISH`` in step)."""
    return {"attempt": attempt, "call_id": call_id, "outcome": outcome, "at": at, "error": error}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    """The end of one attempt on one row, as the runner reports it to ``finish``.

    Keyword-only, so no two values can be swapped unseen. ``owner`` and ``attempt`` guard
    the write: a finish from a runner that was thought dead (its claim recovered
    meanwhile) or for an older attempt changes nothing.
    """

    campaign_id: str
    row: int
    owner: str
    attempt: int
    outcome: str
    now: float
    """When it ended (the entry's ``at``, the campaign's ``updated_at``)."""
    call_id: str | None = None
    detail: str | None = None
    """Why it failed (the error), if it did: the row's ``detail`` and the entry's ``error``."""
    retry_at: float | None = None
    """When to dial again (the retry policy's answer); None: the row is done."""

    def retried(self, state: str) -> bool:
        """Whether the row goes back to ``pending`` (else it is ``done``) in a campaign
        that is now ``state``."""
        return self.retry_at is not None and state in RETRY_STATES

    def entry(self) -> dict[str, Any]:
        """This attempt's entry in the row's call history."""
        return call_entry(self.attempt, self.call_id, self.outcome, self.now, self.detail)


def interrupted(
    campaign_id: str, row: int, owner: str, attempt: int, call_id: str | None, now: float
) -> AttemptResult:
    """The end ``recover`` writes for a claim whose runner is gone: ``unknown`` and final
    (never retried: the call may have gone out)."""
    return AttemptResult(
        campaign_id=campaign_id,
        row=row,
        owner=owner,
        attempt=attempt,
        outcome=UNKNOWN,
        now=now,
        call_id=call_id,
        detail=INTERRUPTED,
    )
