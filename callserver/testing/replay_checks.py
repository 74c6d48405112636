"""After a replayed call: did callserver's REST and the way the call ended match the
recording? Kept out of the pacing (:mod:`~callserver.testing.replay_call`): these run once
the call is over, on what the fake recorded, and only report divergences.
"""

from __future__ import annotations

from typing import Any

from callserver.testing import replay_match as rm
from callserver.testing.replay_call import CallReplay
from callserver.testing.replay_events import starts_turn

__all__ = ["check_end", "check_rest"]


def check_rest(replay: CallReplay, actual: list[tuple[str, Any]]) -> None:
    """Compare REST attempts (action, body) with the recorded ones, in order."""
    # Attempts that never got an answer (connect errors, timeouts) cannot be replayed.
    recorded = [e for e in replay.cassette.of("rest") if e.data.get("status") is not None]
    # After a divergence the call was cut short on purpose: only what came before counts.
    limit = min((d.t for d in replay.divergences), default=float("inf"))
    for index, entry in enumerate(recorded):
        if entry.t > limit:
            return
        action = entry.data["action"]
        turn = _turn_at_t(replay, entry.t)
        expected = rm.normalize(entry.data.get("request"), replay.cassette.call_id)
        if index >= len(actual):
            replay.diverge(entry.t, turn, f"expected REST {action}, but callserver sent none")
            return
        got_action, body = actual[index]
        if got_action != action:
            replay.diverge(entry.t, turn, f"expected REST {action}, got REST {got_action}")
            return
        normalized = rm.normalize(body, replay.call_id)
        if not rm.matches(expected, normalized):
            replay.config_divergence(
                entry.t,
                turn,
                expected,
                normalized,
                agent=replay.story.start_agent,
                where=f"the REST {action} body: the session the call starts with",
                otherwise=f"REST {action} body differs",
            )
            return
    for got_action, _ in actual[len(recorded) :] if not replay.failed else []:
        last = recorded[-1].t if recorded else 0.0
        replay.diverge(last, replay.turn_now(), f"unexpected REST {got_action}")
        return


def check_end(replay: CallReplay, reason: str | None) -> None:
    """The call must end with the recorded reason (when the recording has one)."""
    expected = replay.end_reason
    if expected is not None and reason != expected:
        end = replay.cassette.first("end")
        replay.diverge(
            end.t if end else 0.0,
            replay.turn_now(),
            f"expected the call to end with {expected}, it ended with {reason}",
        )


def _turn_at_t(replay: CallReplay, t: float) -> int:
    """The turn the recording was in at ``t`` (responses created by then)."""
    return sum(
        1 for e in replay.ws if e.kind == "ws_in" and e.t <= t and starts_turn(e.data["event"])
    )
