"""The scripted person at the far end of an outbound call, as both outbound fakes play it.

The OpenAI Live fake (:mod:`~callserver.testing.fake_live_outbound`) and the Twilio fake
(:mod:`~callserver.testing.fake_twilio_api`) each name their own outcomes (the two APIs
report failures differently), but ring, speak and hang up alike; the timing is here once.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ScriptedCallee"]


@dataclasses.dataclass
class ScriptedCallee:
    """How the fake callee of one number behaves; subclasses narrow ``outcome``."""

    outcome: str = "answer"
    ring_s: float = 0.05
    """Seconds before each ringing step (the call is placed, rings, then is answered)."""
    says: str | None = "Hello?"
    """What a person says on answering (None: silence)."""
    hangs_up_after: float | None = None
    """Seconds after the answer (on Twilio: after the bridge to OpenAI) until the callee
    hangs up; None: stays on until the other side ends the call."""
