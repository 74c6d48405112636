"""The call manager's side of call recording: one recorder per call, fed at the boundaries.

Kept out of the manager so its lifecycle code reads without the recording plumbing: the
manager asks for a call's recorder once routed, REST attempts are routed here by call id,
and :meth:`CallRecordings.finish` writes the end and closes the cassette.
"""

from __future__ import annotations

import logging
from typing import Any

from callserver.calls.records import CallRecord
from callserver.records.recorder import (
    NULL_RECORDER,
    CallRecorder,
    RecorderFactory,
    RecordingStart,
)
from callserver.webhooks.openai import IncomingCall

log = logging.getLogger(__name__)


class CallRecordings:
    """Live recorders by call id; a no-op when recording is off."""

    def __init__(self, factory: RecorderFactory | None) -> None:
        self.factory = factory
        self._recorders: dict[str, CallRecorder] = {}

    @property
    def enabled(self) -> bool:
        return self.factory is not None

    def start(self, record: CallRecord, call: IncomingCall, graph: str) -> CallRecorder:
        """This call's recorder (the null one when recording is off or not sampled)."""
        if self.factory is None:
            return NULL_RECORDER
        try:
            recorder = self.factory(
                RecordingStart(
                    call_id=record.call_id,
                    graph=graph,
                    config_hash=record.config_hash or "",
                    t0=record.created_mono,
                )
            )
        except Exception:
            log.exception("recorder failed to start", extra={"call_id": record.call_id})
            recorder = None
        if recorder is None:
            return NULL_RECORDER
        self._recorders[record.call_id] = recorder
        recorder.record(
            "webhook", {"headers": dict(call.delivery_headers), "body": call.payload or {}}
        )
        return recorder

    def observe_rest(
        self,
        call_id: str,
        action: str,
        body: dict[str, Any] | None,
        status: int | None,
        error: str | None,
    ) -> None:
        """Control-client observer: one ``rest`` entry per HTTP attempt."""
        recorder = self._recorders.get(call_id)
        if recorder is not None:
            recorder.record(
                "rest", {"action": action, "request": body, "status": status, "error": error}
            )

    async def moved(self, record: CallRecord) -> None:
        """The call moved to another instance: this cassette ends here (complete)."""
        recorder = self._recorders.pop(record.call_id, None)
        if recorder is None:
            return
        recorder.record("end", {"reason": "handed_over", "state": record.state.value})
        try:
            await recorder.close(complete=True)
        except Exception:
            log.exception("recorder failed to close", extra={"call_id": record.call_id})

    async def finish(self, record: CallRecord) -> None:
        """Write how the call ended and close its cassette; never raises."""
        recorder = self._recorders.pop(record.call_id, None)
        if recorder is None:
            return
        recorder.record("end", {"reason": record.end_reason, "state": record.state.value})
        try:
            await recorder.close(complete=record.end_reason != "internal_error")
        except Exception:
            log.exception("recorder failed to close", extra={"call_id": record.call_id})
