"""GPT-Live call control: ``/live/sessions/{session_id}/{accept,reject,refer,hangup}``.

Differences from Realtime that matter here: the accept body wraps the session config in a
top-level ``session`` object (``accept.py``); reject *requires* a SIP status (300-699); a
decision that lost the race to another accept or reject (on either API) answers
``decision_already_made``, which the shared REST layer raises as
:class:`~callserver.engines.errors.DecidedElsewhere`.
"""

from __future__ import annotations

from callserver.engines.sip_control import SipCallControl


class LiveControl(SipCallControl):
    """Call control for GPT-Live SIP sessions."""

    prefix = "/live/sessions"
