"""CallRecord <-> the fields of its Redis hash.

A record crosses process boundaries as JSON plus a few top-level hash fields (``owner``,
``state``, ``end_reason``) that scripts read or overwrite without parsing JSON (the orphan
sweep marks a record ``owner_lost`` that way). Monotonic clocks mean nothing in another
process, so the wire form carries wall-clock times and durations, and decoding rebuilds
monotonic values relative to the reader's clock: good enough for ``summary()``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from callserver.calls.records import CallRecord, CallState, ToolCall

_SPECIAL = {"state", "end_reason", "tool_calls"}
"""Travel outside the plain JSON fields: state/end_reason as hash fields, tool calls as dicts."""


def _plain_fields() -> tuple[str, ...]:
    """Every CallRecord field except monotonic clocks and the special ones, so a field added
    to the record later is shared between instances without touching this module."""
    return tuple(
        f.name
        for f in dataclasses.fields(CallRecord)
        if f.name not in _SPECIAL and not f.name.endswith("_mono")
    )


_PLAIN_FIELDS = _plain_fields()


def encode(record: CallRecord) -> str:
    """JSON of everything a reader on another instance may show about the call."""
    data: dict[str, Any] = {name: getattr(record, name) for name in _PLAIN_FIELDS}
    data["tool_calls"] = [dataclasses.asdict(t) for t in record.tool_calls]
    data["accepted_after_s"] = (
        record.accepted_mono - record.created_mono if record.accepted_mono is not None else None
    )
    data["duration_s"] = record.duration_s() if record.ended_mono is not None else None
    return json.dumps(data, separators=(",", ":"), default=str)


def decode(fields: Mapping[str, str]) -> CallRecord | None:
    """Rebuild a read-only snapshot from a hash; None if the hash holds no record data."""
    raw = fields.get("data")
    if not raw:
        return None
    data = json.loads(raw)
    record = CallRecord(call_id=data["call_id"])
    for name in _PLAIN_FIELDS:
        if data.get(name) is not None:
            setattr(record, name, data[name])
    record.tool_calls = [ToolCall(**t) for t in data.get("tool_calls") or []]
    record.state = CallState(fields.get("state") or CallState.INCOMING.value)
    record.end_reason = fields.get("end_reason") or None
    offset = time.time() - float(record.created_at)
    record.created_mono = time.monotonic() - offset
    if data.get("accepted_after_s") is not None:
        record.accepted_mono = record.created_mono + float(data["accepted_after_s"])
    if record.state is CallState.ENDED:
        duration = data.get("duration_s")
        if duration is None and fields.get("ended_at"):
            duration = float(fields["ended_at"]) - float(record.created_at)
        record.ended_mono = record.created_mono + max(float(duration or offset), 0.0)
    return record
