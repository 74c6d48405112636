"""The seam between the call path and call recording (cassettes).

The call path reports what crosses its boundaries (the webhook, every REST attempt, every
websocket frame, tools, handoffs, guardrail trips, the end) to a :class:`CallRecorder`. What
is done with it (written, redacted, sampled) is the recorder's business; the call path only
promises to report, and a recorder promises never to block or raise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingStart:
    call_id: str
    graph: str
    config_hash: str
    t0: float
    """``time.monotonic()`` when the webhook was received: offsets are relative to it."""


class CallRecorder(Protocol):
    def record(self, kind: str, data: dict[str, Any]) -> None:
        """Note one event; must not block the event loop and must not raise."""

    async def close(self, *, complete: bool) -> None:
        """Flush and close; ``complete`` is False when the call was cut short abnormally."""


RecorderFactory = Callable[[RecordingStart], "CallRecorder | None"]
"""Returns None when this call is not recorded (recording off, or not sampled)."""


class NullRecorder:
    """The recorder of calls that are not recorded."""

    def record(self, kind: str, data: dict[str, Any]) -> None:
        return None

    async def close(self, *, complete: bool) -> None:
        return None


NULL_RECORDER = NullRecorder()
