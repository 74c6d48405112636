"""What happened on a call, in words every engine can say: the engine-neutral event vocabulary.

Each engine turns its own wire events into :class:`Signal` values (``engines/<name>/``), so
the parts of a call that react to them (idle timer, keypad, "hang up after the goodbye",
transcript and usage on the record) are written once, in ``calls/``, for every engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

SignalKind = Literal[
    "caller_activity",
    "caller_said",
    "agent_started",
    "agent_done",
    "agent_said",
    "dtmf",
    "usage",
    "error",
    "call_progress",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Signal:
    """One thing that happened. Which fields are set depends on ``kind``:

    - ``caller_activity``: the caller started or stopped speaking (no fields).
    - ``caller_said`` / ``agent_said``: a finished turn, ``text`` and its ``ref`` (item id).
    - ``agent_started`` / ``agent_done``: the agent's turn (a response) began / ended;
      ``ref`` identifies the turn so a start and its end can be paired.
    - ``dtmf``: the caller pressed ``text`` (one key, unvalidated: the keypad checks it).
    - ``usage``: ``usage`` values; ``cumulative`` ones replace the record's, others add up.
    - ``error``: the engine reported an error; ``text`` is its code (may be None).
    - ``call_progress``: an outbound call's leg changed: ``text`` is ``ringing``,
      ``answered`` or ``failed``; for ``failed``, ``ref`` is the engine's failure code.
    """

    kind: SignalKind
    text: str | None = None
    ref: str | None = None
    usage: Mapping[str, float] | None = None
    cumulative: bool = False


CALLER_ACTIVITY = Signal("caller_activity")
