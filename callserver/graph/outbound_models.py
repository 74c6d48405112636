"""Config models for calls a graph *places*: its declared variables and its ``outbound:`` block.

An outbound call (one from ``POST /admin/calls`` or a campaign row) brings values for the
graph's declared ``variables:``, which instructions and greetings read as ``{{ var.NAME }}``.
The ``outbound:`` block says how the call is placed (which dialer, from which number) and
what to do when a machine answers (``on_voicemail``), with the message to leave.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from callserver.graph.fields import Duration, Phone, Strict

VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
"""E.164: a plus, a non-zero country code digit, 7 to 15 digits in all."""


def is_e164(value: object) -> bool:
    return isinstance(value, str) and bool(E164_RE.match(value))


def _check_e164(value: str) -> str:
    if not is_e164(value):
        raise ValueError(f"{value!r} is not an E.164 number (e.g. +14155550100)")
    return value


E164 = Annotated[Phone, AfterValidator(_check_e164)]


def _variable_shorthand(value: Any) -> Any:
    """``name: "First name of the callee"`` is a required variable with that description."""
    if isinstance(value, str):
        return {"description": value}
    if value is None:
        return {}
    return value


class VariableSpec(Strict):
    """A value each placed call brings (``{{ var.NAME }}``)."""

    description: str | None = Field(None, description="what the value is, for operators")
    required: bool = Field(
        True, description="a call without it is refused (400); false needs no value"
    )
    default: str | None = Field(
        None, max_length=200, description="used when a call brings none (makes it optional)"
    )

    @model_validator(mode="after")
    def _default_is_optional(self) -> VariableSpec:
        if self.default is not None and self.required and "required" in self.model_fields_set:
            raise ValueError("a variable with a default is optional: drop required: true")
        return self

    @property
    def needed(self) -> bool:
        """Whether a call must bring a value."""
        return self.required and self.default is None


Variable = Annotated[
    VariableSpec,
    BeforeValidator(_variable_shorthand, json_schema_input_type=str | VariableSpec | None),
]

OnVoicemail = Literal["hangup", "leave_message", "continue"]


class OutboundSettings(Strict):
    """How this graph's calls are placed, and what happens when a machine answers."""

    dialer: Literal["live", "twilio"] | None = Field(
        None,
        description="live: GPT-Live dials the SIP trunk (engine: live only); twilio: Twilio's "
        "Calls API dials and bridges to OpenAI's SIP connector. Default: live on engine live, "
        "twilio on engine realtime",
    )
    caller_number: E164 | None = Field(
        None, description="E.164 number calls come from; default CALLSERVER_CALLER_NUMBER"
    )
    on_voicemail: OnVoicemail = Field(
        "hangup",
        description="when a machine answers (voicemail, call screening): hangup, "
        "leave_message (speak leave_message once, then hang up) or continue (the agent "
        "carries on)",
    )
    leave_message: str | None = Field(
        None,
        min_length=1,
        max_length=1500,
        description="the message left on voicemail; placeholders allowed; implies "
        "on_voicemail: leave_message",
    )
    voicemail_detection: Duration = Field(
        6.0,
        ge=1,
        le=30,
        description="how long after the answer the callee's words are checked for a "
        "voicemail greeting or a call-screening prompt",
    )
    machine_detection: bool | None = Field(
        None,
        description="Twilio answering-machine detection where Twilio dials; default "
        "CALLSERVER_TWILIO_MACHINE_DETECTION",
    )
    ring_timeout: Duration = Field(
        30.0, ge=1, le=180, description="give up on a call not answered within this"
    )

    @model_validator(mode="before")
    @classmethod
    def _message_implies_action(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("leave_message") and "on_voicemail" not in data:
            return {**data, "on_voicemail": "leave_message"}
        return data

    @model_validator(mode="after")
    def _message_matches_action(self) -> OutboundSettings:
        if self.on_voicemail == "leave_message" and not self.leave_message:
            raise ValueError("on_voicemail: leave_message needs the leave_message text")
        if self.leave_message and self.on_voicemail != "leave_message":
            raise ValueError(
                f"leave_message is only spoken with on_voicemail: leave_message "
                f"(not {self.on_voicemail})"
            )
        return self
