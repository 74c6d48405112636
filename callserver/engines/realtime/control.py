"""Realtime call control: ``/realtime/calls/{call_id}/{accept,reject,refer,hangup}``, with a
flat session config as the accept body."""

from __future__ import annotations

from callserver.engines.sip_control import SipCallControl


class RealtimeControl(SipCallControl):
    """Call control for Realtime SIP calls."""

    prefix = "/realtime/calls"
