"""Label values for callserver's metrics: which ones exist, and how free-form ones stay few.

Every distinct label value is a time series Prometheus keeps forever, so phone numbers and
call ids never become labels, and free-form values (end reasons, tool names, error codes)
are mapped to ``"other"`` once they are unknown or too many (:class:`BoundedLabel`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from callserver.calls.records import CallRecord

OTHER = "other"
NONE = "none"

ANALYSIS_OUTCOMES: tuple[str, ...] = (
    "completed",
    "http_error",
    "timeout",
    "network_error",
    "bad_response",
    "refusal",
    "incomplete",
    "invalid_output",
    "interrupted",
)
"""``completed``, or why an analysis failed (``callserver.records.responses_client``)."""

KNOWN_END_REASONS: frozenset[str] = frozenset(
    {
        "caller_hangup",
        "agent_end_call",
        "transferred",
        "idle_timeout",
        "admin_hangup",
        "max_duration",
        "shutdown",
        "caller_gone",
        "accept_failed",
        "connect_failed",
        "internal_error",
        "rejected:route",
        "rejected:precheck",
        "rejected:capacity",
        "rejected:registry",
        "twilio_hangup",
        "dtmf_end_call",
        "decided_elsewhere",
        "control_lost",
        "hangup_requested",
        "session_expired",
        "content_policy",
        "connection_lost",
        "session_closed",
    }
)
"""End reasons the code base produces. Others (e.g. transfer tool names used as reasons) are
added with ``Metrics.allow_end_reasons`` when the config is loaded, or count as "other"."""

_FAILED_AFTER_ACCEPT = frozenset({"internal_error", "connect_failed"})
_LABEL_SAFE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class BoundedLabel:
    """Maps raw values to a bounded set of label values.

    ``allowed`` values always pass. Other values pass only while ``open_slots`` distinct
    ones have not been used yet (and they look like identifiers, not free text); after that
    they become ``"other"``. A closed label (``open_slots=0``) only takes ``allowed``.
    """

    def __init__(self, allowed: Iterable[str] = (), *, open_slots: int) -> None:
        self._allowed = set(allowed)
        self._open_slots = open_slots
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def allow(self, values: Iterable[str]) -> None:
        with self._lock:
            self._allowed.update(v for v in values if _LABEL_SAFE.match(v))

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return NONE
        with self._lock:
            if value in self._allowed or value in self._seen:
                return value
            if len(self._seen) < self._open_slots and _LABEL_SAFE.match(value):
                self._seen.add(value)
                return value
        return OTHER


OUTBOUND_OUTCOMES = {
    "completed": "completed",
    "voicemail": "completed",
    "busy": "unanswered",
    "no_answer": "unanswered",
    "rejected": "rejected",
    "failed": "failed",
    "unknown": "failed",
}
"""An outbound call's outcome -> the coarse outcome (``unanswered``: nobody picked up)."""


def call_outcome(record: CallRecord) -> str:
    """Coarse result of a call, for dashboards: completed, rejected, abandoned or failed.

    ``abandoned`` = the caller hung up before we answered; ``failed`` = we could not answer
    or the session broke. Transfers count as completed (the end reason tells them apart).
    """
    if record.outbound is not None:
        return OUTBOUND_OUTCOMES.get(str(record.outbound.get("outcome")), "failed")
    reason = record.end_reason or ""
    if reason.startswith("rejected"):
        return "rejected"
    if record.accepted_mono is None:
        return "abandoned" if reason == "caller_gone" else "failed"
    if reason in _FAILED_AFTER_ACCEPT:
        return "failed"
    return "completed"
