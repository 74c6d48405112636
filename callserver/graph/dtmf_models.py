"""The ``dtmf:`` section of a graph: what keypad presses do, and its load-time form.

Callers on a phone line press keys for a reason: "press 1 for billing, 0 for a human". A key
(or a ``#``-terminated sequence such as ``123#``) maps to one action: hand off to an agent,
transfer the call, end it, or tell the agent in words what was pressed.

YAML reads an unquoted ``1:`` as the number 1 (and ``010`` as 8), so keys are taken back as
written; whether a key is well formed is checked with the other cross-key checks
(``resolve_dtmf``), where the error can point at the key's own line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from callserver.graph.fields import Duration, Phone, Strict
from callserver.graph.tool_models import TARGET_PATTERN
from callserver.graph.yamlsrc import YamlInt

KEY_PATTERN = re.compile(r"^([0-9*#]|[0-9*]{1,31}#)$")
"""One key, or a sequence of up to 31 keys ending in ``#`` (``#`` is what ends the input)."""

DIGITS = frozenset("0123456789*#")
"""What a phone keypad sends. A-D exist in the standard but not on phones: ignored."""

ACTIONS = ("handoff", "transfer", "end_call", "message")


def key_text(value: Any) -> Any:
    """A DTMF map key as the operator wrote it (``1`` and ``"1"`` are the same key)."""
    if isinstance(value, YamlInt):
        return value.source
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


DtmfKey = Annotated[str, BeforeValidator(key_text, json_schema_input_type=str | int)]


class DtmfActionSpec(Strict):
    """What one key (or sequence) does: exactly one of the four actions."""

    handoff: str | None = Field(None, description="key of the agent to switch to")
    transfer: Phone | None = Field(
        None, description="cold transfer (SIP REFER) to tel:+14155550123 or sip:desk@pbx.example"
    )
    end_call: bool | None = Field(None, description="true: hang up now")
    message: str | None = Field(
        None, min_length=1, description="sent to the agent as what the caller said"
    )

    @field_validator("transfer")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not TARGET_PATTERN.match(value):
            raise ValueError(
                f"transfer target {value!r} must be tel:+<number> or sip:<user>@<host>"
            )
        return value

    @field_validator("end_call")
    @classmethod
    def _end_call_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError(
                "end_call: false does nothing (write end_call: true, or remove the key)"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> DtmfActionSpec:
        if sum(getattr(self, name) is not None for name in ACTIONS) != 1:
            raise ValueError(f"give exactly one of {', '.join(ACTIONS)}")
        return self


class DtmfSpec(Strict):
    """Keypad handling for every call of the graph. Absent: key presses are ignored."""

    keys: dict[DtmfKey, DtmfActionSpec] = Field(
        default_factory=dict,
        description="'1', '*', '#' or a sequence ending in '#' such as '123#' -> action",
        json_schema_extra={"propertyNames": {"pattern": KEY_PATTERN.pattern}},
    )
    unmatched: Literal["message", "ignore"] = Field(
        "message",
        description="keys not in 'keys': tell the agent 'The caller pressed 5', or drop them",
    )
    inter_digit_timeout: Duration = Field(
        3.0,
        gt=0,
        le=10,
        description="how long to wait for the next key of a sequence before giving up on it",
    )


# ---- the resolved form, used on calls -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfAction:
    """One resolved action. ``value`` is the agent key, the transfer target or the text."""

    kind: Literal["handoff", "transfer", "end_call", "message"]
    value: str = ""


@dataclass(frozen=True, slots=True)
class DtmfPlan:
    """A graph's keypad map, validated. The default (no ``dtmf:`` section) does nothing."""

    keys: Mapping[str, DtmfAction] = field(default_factory=dict)
    unmatched: Literal["message", "ignore"] = "ignore"
    inter_digit_timeout_s: float = 3.0

    @property
    def enabled(self) -> bool:
        """Whether any key press can have an effect (else no listener is installed)."""
        return bool(self.keys) or self.unmatched == "message"

    @property
    def sequence_starts(self) -> frozenset[str]:
        """First keys of the multi-key sequences: pressing one of these waits for more."""
        return frozenset(key[0] for key in self.keys if len(key) > 1)
