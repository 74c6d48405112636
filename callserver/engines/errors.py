"""What a call-control request can end in, engine-neutral: the manager decides on these."""

from __future__ import annotations


class ControlError(Exception):
    """A call-control request failed for good (non-retryable, or out of time)."""

    def __init__(self, action: str, status: int | None, detail: str) -> None:
        super().__init__(f"{action} failed: {detail}")
        self.action = action
        self.status = status
        self.detail = detail


class CallGone(ControlError):
    """404: the call no longer exists (caller hung up, or already ended)."""


class DecidedElsewhere(ControlError):
    """``decision_already_made``: another accept or reject (on either API) got there first.

    One pending SIP call can reach us as a Realtime and a Live webhook; the first successful
    decision selects the runtime and every later one gets this. It means someone else owns
    the call: do nothing more to it (no hangup, no reject).
    """
