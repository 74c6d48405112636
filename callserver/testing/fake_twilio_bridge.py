"""The fake Twilio's ``<Dial><Sip>`` to OpenAI: ring a call at the fake OpenAI, deliver
OpenAI's signed incoming-call webhook(s) to callserver, and play the callee on the leg
callserver accepts until one side hangs up.

The SIP headers the ``<Sip>`` URI carries go into the webhook's ``sip_headers``: that is
how the correlation header of an outbound call reaches callserver, as on the real path.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httpx

from callserver.testing import server_events
from callserver.testing.fake_twilio_calls import FakeTwilioCall, TwilioCallee, new_sid, uri_headers
from callserver.testing.webhook_sender import incoming_call_event, live_incoming_event, send_webhook

if TYPE_CHECKING:
    from callserver.testing.fake_openai import FakeOpenAI
    from callserver.testing.fake_twilio_api import FakeTwilio

__all__ = ["VOICEMAIL_GREETING", "OpenAIBridge"]

VOICEMAIL_GREETING = "Hi, you've reached Ana. Please leave a message after the tone."

Leg = tuple[str, str]
"""(engine, OpenAI call or session id) of one leg OpenAI announced."""


class OpenAIBridge:
    """Bridges the fake Twilio's answered calls to its fake OpenAI (read from ``twilio`` at
    each bridge, so a test may set ``openai`` and ``webhook_url`` after construction)."""

    def __init__(self, twilio: FakeTwilio, http: httpx.AsyncClient) -> None:
        self._twilio = twilio
        self._http = http

    @property
    def _openai(self) -> FakeOpenAI:
        assert self._twilio.openai is not None, "FakeTwilio needs openai= to bridge"
        return self._twilio.openai

    async def run(self, call: FakeTwilioCall, callee: TwilioCallee, sip_uri: str) -> None:
        """Bridge ``call``; returns once the leg has ended or was never accepted."""
        twilio, fake = self._twilio, self._openai
        assert twilio.webhook_url is not None
        headers = [
            ("X-Twilio-CallSid", new_sid()),
            *uri_headers(sip_uri),
            *twilio.extra_bridge_headers,
        ]
        legs: list[Leg]
        if "realtime" in twilio.engines and "live" in twilio.engines:
            legs = list(zip(("realtime", "live"), fake.add_dual_call(), strict=True))
        elif "live" in twilio.engines:
            legs = [("live", fake.live.add_session())]
        else:
            legs = [("realtime", fake.add_call())]
        for engine, call_id in legs:
            incoming = live_incoming_event if engine == "live" else incoming_call_event
            event = incoming(call_id, from_=call.from_, to=call.to, extra_headers=headers)
            await send_webhook(twilio.webhook_url, twilio.webhook_secret, event, client=self._http)
        accepted = await self._wait_accepted(legs)
        if accepted is None:
            return
        engine, call_id = accepted
        call.bridged = accepted
        await self._callee_speaks(engine, call_id, callee)
        started = time.monotonic()
        while self._leg_up(engine, call_id):
            if (
                callee.hangs_up_after is not None
                and time.monotonic() - started >= callee.hangs_up_after
            ):
                if engine == "live":
                    await fake.live.caller_hangs_up(call_id)
                else:
                    await fake.caller_hangs_up(call_id)
                break
            await asyncio.sleep(0.02)

    async def _wait_accepted(self, legs: list[Leg], timeout_s: float = 10.0) -> Leg | None:
        """The leg callserver accepted; None once every leg ended, or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for engine, call_id in legs:
                if self._state(engine, call_id) == "accepted":
                    return engine, call_id
            if all(self._state(e, c) == "ended" for e, c in legs):
                return None
            await asyncio.sleep(0.01)
        return None

    def _state(self, engine: str, call_id: str) -> str | None:
        if engine == "live":
            session = self._openai.live.sessions.get(call_id)
            return session.state if session else None
        return self._openai.call_state(call_id)

    def _leg_up(self, engine: str, call_id: str) -> bool:
        return self._state(engine, call_id) not in ("ended", None)

    async def _callee_speaks(self, engine: str, call_id: str, callee: TwilioCallee) -> None:
        text = VOICEMAIL_GREETING if callee.outcome == "machine" else callee.says
        if not text:
            return
        if engine == "live":
            await self._openai.live.wait_attached(call_id)
            await self._openai.live.caller_says(call_id, text)
            return
        conn = await self._openai.wait_connected(call_id)
        await conn.send(server_events.input_transcription_completed(None, text))
