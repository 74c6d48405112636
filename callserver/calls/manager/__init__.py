"""The call-lifecycle manager: from a verified webhook to a finalised call record.

Every call is a task owned by the manager. Every way a call can end (the caller hangs up,
an agent ends or transfers it, max duration, an admin or Twilio request, shutdown) goes
through :meth:`CallManager.end`, which is idempotent: it hangs up at OpenAI when we are the
ones ending a live call, stops the session, finalises the record and frees the slot.

The manager is one object built from parts, one module each: ``intake`` (incoming calls),
``placing`` (outbound calls), ``moving`` (calls changing instance), ``ending`` and
``shutdown``; ``state`` holds what they share.
"""

from __future__ import annotations

from callserver.calls.manager.ending import Ending
from callserver.calls.manager.intake import Intake
from callserver.calls.manager.moving import Moving
from callserver.calls.manager.placing import Placing
from callserver.calls.manager.shutdown import Shutdown
from callserver.calls.manager.state import ConfigSource, Draining

__all__ = ["CallManager", "ConfigSource", "Draining"]


class CallManager(Intake, Placing, Moving, Ending, Shutdown):
    """Owns every call task; the only writer of call state."""
