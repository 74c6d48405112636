"""GPT-Live sideband events -> engine-neutral :class:`Signal` values.

Only what a single event says on its own: keys, usage, errors. Turns are inferred from
transcript fragments over time, by the sideband model (``turns.py``), which hands its
signals to the session directly.
"""

from __future__ import annotations

from typing import Any

from callserver.engines.signals import Signal

_NONE: tuple[Signal, ...] = ()


def live_signals(message: dict[str, Any]) -> tuple[Signal, ...]:
    kind = message.get("type")
    if kind == "transport.dtmf.received":
        key = message.get("event")
        return (Signal("dtmf", text=key if isinstance(key, str) else repr(key)),)
    if kind in ("session.usage.updated", "session.closed"):
        seconds = (message.get("usage") or {}).get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            # Cumulative billable seconds: always the latest value, never a sum.
            return (Signal("usage", usage={"seconds": float(seconds)}, cumulative=True),)
        return _NONE
    if kind == "error":
        code = (message.get("error") or {}).get("code")
        return (Signal("error", text=str(code) if code else None),)
    if kind in _TRANSPORT:
        error = message.get("error") if kind == "transport.failed" else None
        code = error.get("code") if isinstance(error, dict) else None
        code = str(code)[:64] if code else None
        return (Signal("call_progress", text=_TRANSPORT[kind], ref=code),)
    return _NONE


_TRANSPORT = {
    "transport.ringing": "ringing",
    "transport.answered": "answered",
    "transport.failed": "failed",
}
"""An outbound SIP leg's progress, delivered only to sidebands (outbound calls only)."""
