"""Session settings and limits of a graph: what is sent to the realtime API for every call."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from callserver.graph.fields import Duration, Strict, Voice

MAX_SESSION_S = 60 * 60
"""The realtime API ends a session after 60 minutes (``session_expired``)."""


class Transcription(Strict):
    """Transcription of the caller's audio (for records and guardrails, not for the model)."""

    model: str = "gpt-4o-mini-transcribe"
    language: str | None = Field(None, description="ISO-639-1 code such as 'en'")
    prompt: str | None = Field(None, description="words or style to help the transcriber")


class SemanticVad(Strict):
    """Turn detection by a model that judges whether the caller has finished their thought."""

    type: Literal["semantic_vad"]
    eagerness: Literal["auto", "low", "medium", "high"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = True


class ServerVad(Strict):
    """Turn detection by silence: simpler, tunable in milliseconds."""

    type: Literal["server_vad"]
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0)
    silence_duration_ms: int | None = Field(None, ge=0)
    idle_timeout_ms: int | None = Field(None, ge=0)
    create_response: bool | None = None
    interrupt_response: bool | None = True


TurnDetection = Annotated[SemanticVad | ServerVad, Field(discriminator="type")]

AUDIO_FORMATS: dict[str, dict[str, Any]] = {
    "pcmu": {"type": "audio/pcmu"},
    "pcma": {"type": "audio/pcma"},
    "pcm": {"type": "audio/pcm", "rate": 24000},
}
"""Short names operators write -> the API's format objects. Unset = negotiated by SIP SDP."""


class Tracing(Strict):
    """OpenAI tracing of the session. Absent = tracing disabled (calls carry personal data)."""

    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, str] | None = None


class SessionSettings(Strict):
    """Realtime session settings shared by every agent of the graph."""

    model: str = "gpt-realtime"
    voice: Voice = "marin"
    speed: float | None = Field(None, ge=0.25, le=1.5)
    transcription: Transcription | None = Field(
        default_factory=Transcription, description="null disables transcription"
    )
    turn_detection: TurnDetection = Field(default_factory=lambda: SemanticVad(type="semantic_vad"))
    noise_reduction: Literal["near_field", "far_field"] | None = None
    tool_choice: Literal["auto", "none", "required"] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=4096)] | Literal["inf"] | None = None
    input_audio_format: Literal["pcmu", "pcma", "pcm"] | None = Field(
        None, description="leave unset on SIP: the format is negotiated by SDP"
    )
    output_audio_format: Literal["pcmu", "pcma", "pcm"] | None = None
    tracing: Tracing | None = None


class LimitsSpec(Strict):
    """How long and how many calls a graph may take."""

    max_duration: Duration = Field(55 * 60, gt=0, le=MAX_SESSION_S)
    idle_timeout: Duration | None = Field(
        None, gt=0, description="no caller speech for this long -> prompt once, then end"
    )
    max_concurrent: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _idle_below_max(self) -> LimitsSpec:
        if self.idle_timeout is not None and self.idle_timeout >= self.max_duration:
            raise ValueError("idle_timeout must be shorter than max_duration")
        return self
