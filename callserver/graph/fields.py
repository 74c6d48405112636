"""Reusable field types for the config models: voices, durations, phone numbers.

Each type carries its own validation message, so an operator reads "unknown voice 'fable'"
rather than a pydantic union dump, and its own JSON Schema, so editors can autocomplete.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from callserver.graph.errors import did_you_mean
from callserver.graph.yamlsrc import YamlInt

VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""Voices the realtime API accepts on a call (protocol.md); anything else is ``{id: ...}``."""
LIVE_ONLY_VOICES: tuple[str, ...] = (
    "beacon", "bossa", "cinder", "delta", "gleam", "meridian", "quartz", "ripple", "shida",
    "stone", "tempo", "vesper", "willow",
)  # fmt: skip
"""GPT-Live's further built-in voices; which voices a graph may use depends on its engine
(checked by the resolver, which knows the engine)."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomVoice(Strict):
    """A custom voice by id, e.g. ``{id: voice_1234}``."""

    id: str


def _check_voice(value: str | CustomVoice) -> str | CustomVoice:
    known = (*VOICES, *LIVE_ONLY_VOICES)
    if isinstance(value, str) and value not in known:
        hint = did_you_mean(value, known) or f" (voices: {', '.join(VOICES)}, or {{id: ...}})"
        raise ValueError(f"unknown voice {value!r}{hint}")
    return value


Voice = Annotated[
    str | CustomVoice,
    AfterValidator(_check_voice),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": [*VOICES, *LIVE_ONLY_VOICES]},
                {
                    "type": "object",
                    "properties": {"id": {"type": "string"}},
                    "required": ["id"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def parse_duration(value: Any) -> Any:
    """``90``, ``"90s"``, ``"55m"``, ``"1h30m"`` -> seconds. Other input is left for pydantic."""
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return float(text)
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ValueError(f"not a duration: {value!r} (write e.g. 45, '45s', '5m', '1h')")
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$"},
            ],
            "description": "seconds, or a string such as '90s', '5m', '1h'",
        }
    ),
]


def _phone_text(value: Any) -> Any:
    """YAML reads an unquoted ``+18005551212`` as an int; get the written text back."""
    if isinstance(value, YamlInt):
        return value.source
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Phone = Annotated[
    str,
    BeforeValidator(_phone_text),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
]


def one_or_many(value: Any) -> Any:
    """Let operators write a single value where a list is expected."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def compile_pattern(value: str) -> str:
    """Reject a regular expression that does not compile, at load time."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Pattern = Annotated[str, AfterValidator(compile_pattern)]

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Names the model sees (tools) or routes refer to (graphs): what function names allow."""
