"""What callserver answers Twilio about a call it placed: the TwiML at answer, and statuses.

``answer``: the callee picked up (Twilio fetches the call's ``Url``). With answering-machine
detection Twilio says who (``AnsweredBy``); a machine on a graph whose ``on_voicemail`` is
``hangup`` gets ``<Hangup/>`` (outcome ``voicemail``); anything else is bridged to OpenAI's
SIP connector with the signed correlation header (``correlation.py``).

``status``: ringing is noted on the record (when this instance owns it); a terminal status
ends the call through the manager's one end path, routed to its owner with Redis.
"""

from __future__ import annotations

import logging

from twilio.twiml.voice_response import VoiceResponse

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.registry import RegistryUnavailable
from callserver.outbound.correlation import HEADER, Correlation
from callserver.outbound.voicemail import TWILIO_MACHINE
from callserver.webhooks import twiml
from callserver.webhooks.twilio import TERMINAL_STATUSES

log = logging.getLogger(__name__)


def hangup_twiml() -> str:
    return twiml.hangup()


def bridge_twiml(sip_uri: str) -> str:
    """Connect the answered callee to OpenAI's SIP connector (``sip_uri`` has the header)."""
    response = VoiceResponse()
    response.dial().sip(sip_uri)
    return str(response.to_xml())


class TwilioOutbound:
    """Answers Twilio's requests about calls the Twilio dialer placed."""

    def __init__(
        self,
        *,
        manager: CallManager,
        config: ConfigSource,
        correlation: Correlation,
        sip_uri: str,
    ) -> None:
        self._manager = manager
        self._config = config
        self._correlation = correlation
        self._sip_uri = sip_uri

    async def answer(self, attempt_id: str, engine: str, answered_by: str | None) -> str:
        """The TwiML for an answered outbound call."""
        on_voicemail = "hangup"
        try:
            record = await self._manager.registry.get(attempt_id)
        except RegistryUnavailable:
            record = None
        if record is None or not record.live:
            log.warning("twilio answer for a call that is not live", extra={"call_id": attempt_id})
            return hangup_twiml()
        graph = self._config.current.graphs.get(record.graph or "")
        if graph is not None and graph.outbound is not None:
            on_voicemail = graph.outbound.on_voicemail
        if answered_by in TWILIO_MACHINE and on_voicemail == "hangup":
            log.info("twilio detected a machine: hanging up", extra={"call_id": attempt_id})
            self._manager.spawn_end(attempt_id, "voicemail", False)
            return hangup_twiml()
        value = self._correlation.sign(attempt_id, engine, answered_by)
        uri = twiml.sip_uri_with_headers(self._sip_uri, [(HEADER, value)])
        return bridge_twiml(uri)

    async def status(self, attempt_id: str, status: str) -> str:
        """Apply one status callback; returns what happened (for the response)."""
        if status not in TERMINAL_STATUSES:
            if self._manager.registry.is_local(attempt_id):
                record = await self._manager.registry.get(attempt_id)
                info = record.outbound if record is not None else None
                if info is not None and status == "ringing" and info.get("state") == "dialing":
                    info["state"] = "ringing"
                if record is not None:
                    record.twilio_status = status
                return "recorded"
            return "ignored"
        hangup = status == "completed"
        ended = await self._manager.end(attempt_id, f"twilio:{status}", hangup=hangup)
        return "ended" if ended else "already_ended"
