"""Config models for tools and guardrails, told apart by their ``type`` key.

A bare string (``get_weather: mypkg.tools:get_weather``) is shorthand for a Python tool or
guardrail, because that is the common case and the one ops people copy from developers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from callserver.graph.fields import Pattern, Phone, Strict

REF_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
TARGET_PATTERN = re.compile(r"^(tel:\+?[0-9*#()\- .]{3,32}|sips?:[^\s@]+@[^\s]+)$")


def _python_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return {"type": "python", "function": value}
    return value


class PythonTool(Strict):
    """A Python function (or an agents-SDK FunctionTool) imported by ``module:attribute``.

    The argument schema comes from the type hints and the docstring (agents SDK
    ``function_tool``), so the developer documents the tool once, in code.
    """

    type: Literal["python"]
    function: str = Field(pattern=REF_PATTERN, description="module:attribute")
    description: str | None = Field(None, description="overrides the docstring")


class Signing(Strict):
    """HMAC-SHA256 signature so the backend can verify a request came from callserver.

    ``signature = hex(HMAC_SHA256(secret, f"{timestamp}.{body}"))`` sent as ``v1=<hex>``.
    """

    secret: str = Field(description="an env reference, e.g. ${ORDERS_SIGNING_SECRET}")
    header: str = "X-Callserver-Signature"
    timestamp_header: str = "X-Callserver-Timestamp"


class HttpTool(Strict):
    """A tool that calls an HTTP endpoint, defined entirely in YAML."""

    type: Literal["http"]
    description: str = Field(description="tells the model when and why to call it")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(description="https://host/path/{arg}: {arg} is filled URL-encoded")
    headers: dict[str, str] = Field(
        default_factory=dict, description="values may only take secrets from ${ENV_VARS}"
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (type: object) of the arguments; all are required unless "
        "'required' says otherwise",
    )
    timeout: float = Field(5.0, gt=0, le=30)
    result: str | None = Field(
        None, description="dotted path into the JSON response, e.g. data.status"
    )
    max_output_chars: int = Field(2000, ge=100, le=20000)
    signing: Signing | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class EndCallTool(Strict):
    """The built-in ``end_call``, declared only to change its description."""

    type: Literal["end_call"]
    description: str | None = None


class TransferCallTool(Strict):
    """A cold transfer (SIP REFER) of the caller to a fixed ``tel:`` or ``sip:`` target."""

    type: Literal["transfer_call"]
    target: Phone = Field(description="tel:+14155550123 or sip:desk@pbx.example.com")
    description: str | None = None

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not TARGET_PATTERN.match(value):
            raise ValueError(
                f"transfer target {value!r} must be tel:+<number> or sip:<user>@<host>"
            )
        return value


ToolSpec = Annotated[
    PythonTool | HttpTool | EndCallTool | TransferCallTool,
    Field(discriminator="type"),
    BeforeValidator(
        _python_shorthand,
        json_schema_input_type=str | PythonTool | HttpTool | EndCallTool | TransferCallTool,
    ),
]


class PythonGuardrail(Strict):
    """An output guardrail function (ctx, agent, output) -> GuardrailFunctionOutput, or an
    OutputGuardrail object, imported by ``module:attribute``."""

    type: Literal["python"]
    function: str = Field(pattern=REF_PATTERN)


class BlockedPhrases(Strict):
    """Trip when the agent says any phrase (case-insensitive) or matches any pattern."""

    type: Literal["blocked_phrases"]
    phrases: list[str] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list, description="Python regexes")

    @model_validator(mode="after")
    def _not_empty(self) -> BlockedPhrases:
        if not self.phrases and not self.patterns:
            raise ValueError("give at least one of phrases, patterns")
        return self


GuardrailSpec = Annotated[
    PythonGuardrail | BlockedPhrases,
    Field(discriminator="type"),
    BeforeValidator(
        _python_shorthand, json_schema_input_type=str | PythonGuardrail | BlockedPhrases
    ),
]
