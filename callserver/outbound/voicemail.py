"""When a machine answers an outbound call: detect it, then hang up or leave a message.

Where Twilio dials with answering-machine detection on, Twilio says who answered
(``AnsweredBy``). Otherwise (GPT-Live's own dialer, or Twilio without detection) the callee's
first seconds of transcript tell: voicemail greetings ("you've reached...", "leave a message
after the tone") and carrier call-screening prompts ("the person you're calling is using a
screening service... say your name"). The wait is bounded (``outbound.voicemail_detection``):
if nothing machine-like was said by then, a person answered.

What then happens is the graph's ``outbound.on_voicemail``: ``hangup``; ``leave_message``
(the agent is told to say the graph's ``leave_message`` once, word for word; the call hangs
up when that turn is over, or after a bound); or ``continue``. The outcome is ``voicemail``
either way, on the record and in the ``call.ended`` event (``answered_by``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Literal

from callserver.calls.records import CallRecord
from callserver.engines.signals import Signal

log = logging.getLogger(__name__)

Machine = Literal["voicemail", "screening"]

_SCREENING = re.compile(
    r"screening service|(say|state|record) your name|why (you'?re|you are) calling"
    r"|the person you'?re calling is using|who'?s calling|call ?assist|stay on the line while",
    re.IGNORECASE,
)
_VOICEMAIL = re.compile(
    r"leave (me |us )?(a |your )?(brief |short )?(message|voicemail|name and number)"
    r"|after the (tone|beep)|at the (tone|beep)|you'?ve reached|you have reached"
    r"|(is |are )?(not |un)available|can'?t (take|come to|answer)"
    r"|cannot (take|come to|answer)|voice ?mail|mailbox|record your message"
    r"|the number you have dialed|the subscriber you|please try again later"
    r"|deje (su|un) mensaje|despu[eé]s del tono|laissez (un|votre) message|apr[eè]s le bip",
    re.IGNORECASE,
)
TWILIO_MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)


def classify(text: str) -> Machine | None:
    """Whether the callee's words so far are a machine's: screening first (its prompts also
    mention calls), then voicemail; None for anything a person may say."""
    if _SCREENING.search(text):
        return "screening"
    if _VOICEMAIL.search(text):
        return "voicemail"
    return None


def leave_message_instructions(message: str) -> str:
    return (
        "You have reached a voicemail box or a call-screening service, not a person. Say "
        f'this message now, once, word for word, then stop talking: "{message}"'
    )


class VoicemailWatch:
    """Per outbound call: listens to the callee's first words and applies ``on_voicemail``."""

    def __init__(
        self,
        record: CallRecord,
        *,
        action: Literal["hangup", "leave_message", "continue"],
        wait_s: float,
        message: str | None,
        end: Callable[[str, bool], None],
        say: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._record = record
        self._action = action
        self._wait_s = wait_s
        self._message = message
        self._end = end
        self._say = say
        self._heard: list[str] = []
        self._armed = False
        self.decided: str | None = None
        """``person``, ``voicemail`` or ``screening`` once decided."""
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._said = False
        self._turn: str | None = None

    def answered(self, answered_by: str | None = None) -> None:
        """The callee's leg answered: start listening (or act on Twilio's verdict)."""
        if self._armed or self.decided is not None:
            return
        self._armed = True
        if answered_by in TWILIO_MACHINE:
            self._machine("voicemail", source="twilio")
            return
        if answered_by == "human":
            self._decide_person()
            return
        self._timer = asyncio.get_running_loop().call_later(self._wait_s, self._decide_person)

    def on_signal(self, signal: Signal) -> None:
        if self.decided is None:
            if self._armed and signal.kind == "caller_said" and signal.text:
                self._heard.append(signal.text)
                kind = classify(" ".join(self._heard))
                if kind is not None:
                    self._machine(kind, source="transcript")
            return
        if not self._said:
            return
        if signal.kind == "agent_started" and self._turn is None:
            self._turn = signal.ref
        elif signal.kind == "agent_done" and self._turn is not None and signal.ref == self._turn:
            self._finish()

    async def close(self) -> None:
        """The call ended: stop listening, and stop (and await) a message still waiting."""
        if self._timer is not None:
            self._timer.cancel()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _decide_person(self) -> None:
        if self.decided is None:
            self.decided = "person"
            if self._record.outbound is not None:
                self._record.outbound.setdefault("answered_by", "person")

    def _machine(self, kind: Machine, *, source: str) -> None:
        self.decided = kind
        if self._timer is not None:
            self._timer.cancel()
        if self._record.outbound is not None:
            self._record.outbound["answered_by"] = kind
        log.info(
            "a machine answered (%s, by %s): %s",
            kind,
            source,
            self._action,
            extra={"call_id": self._record.call_id},
        )
        if self._action == "hangup":
            self._end("voicemail", True)
        elif self._action == "leave_message" and self._message:
            self._task = asyncio.get_running_loop().create_task(
                self._leave(self._message), name=f"voicemail:{self._record.call_id}"
            )

    async def _leave(self, message: str) -> None:
        if not await self._say(leave_message_instructions(message)):
            self._end("voicemail", True)
            return
        self._said = True
        # The message is spoken in one turn; hang up when it ends, or after a bound.
        await asyncio.sleep(10.0 + len(message) / 8)
        self._finish()

    def _finish(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._said = False
        self._end("voicemail", True)
