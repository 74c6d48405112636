"""Which campaign states may follow which, checked the same way by both stores.

SQLite checks in its transaction; Redis checks inside the ``_SET_STATE`` Lua script (the
check and the write must be one atomic step there), so it is handed the states a target
may be reached from (:func:`allowed_from`) instead of this table.
"""

from __future__ import annotations

TRANSITIONS: dict[str, frozenset[str]] = {
    "running": frozenset({"paused", "cancelled", "completed"}),
    "paused": frozenset({"running", "cancelled"}),
    "cancelled": frozenset(),
    "completed": frozenset(),
}


class TransitionError(ValueError):
    """A campaign cannot go from its state to the one asked (e.g. resume a cancelled one)."""


def refused(current: str, state: str) -> TransitionError:
    """The error for a refused transition: one wording for both stores."""
    return TransitionError(f"campaign is {current}: it cannot become {state}")


def check_transition(current: str, state: str) -> None:
    """Raise :class:`TransitionError` unless ``current`` may become ``state`` (staying
    in the same state is always allowed: pausing a paused campaign is no error)."""
    if state != current and state not in TRANSITIONS[current]:
        raise refused(current, state)


def allowed_from(state: str) -> str:
    """The states that may become ``state``, space separated (the Lua script's form)."""
    return " ".join(s for s, targets in TRANSITIONS.items() if state in targets)
