"""Everything callserver needs from the agents SDK's realtime internals, in one place.

``openai-agents`` changes its realtime module often. This module is the only one that calls
SDK helpers beyond the documented ``RealtimeRunner``/``RealtimeSession`` surface, so an
upgrade is checked here (and by ``tests/test_sdk_contract.py``), nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeRunConfig
from agents.realtime.config import RealtimeSessionModelSettings
from agents.realtime.model import RealtimeModelConfig
from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel

from callserver.engines.base import FrameTap


class _TappedConnection:
    """A websocket client connection that reports every frame to a tap, then passes it on."""

    def __init__(self, connection: Any, tap: FrameTap) -> None:
        self._connection = connection
        self._tap = tap

    def _report(self, kind: str, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            event = {"unparsed": message if isinstance(message, str) else repr(message)}
        self._tap(kind, {"event": event})

    async def send(self, message: str | bytes) -> None:
        self._report("ws_out", message)
        await self._connection.send(message)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[str | bytes]:
        async for message in self._connection:
            self._report("ws_in", message)
            yield message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _TappedSIPModel(OpenAIRealtimeSIPModel):
    """The SDK's SIP model, with its websocket wrapped so frames can be recorded."""

    def __init__(self, tap: FrameTap) -> None:
        super().__init__()
        self._frame_tap = tap

    async def _create_websocket_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super()._create_websocket_connection(*args, **kwargs)
        return _TappedConnection(connection, self._frame_tap)


def make_model(model_name: str, tap: FrameTap | None = None) -> OpenAIRealtimeSIPModel:
    """A fresh SIP model object for one call (a model object connects exactly once).

    The SDK refuses ``model_name`` in the settings together with ``call_id``; the model
    that goes into its ``session.update`` is the attribute set here. With ``tap``, every
    websocket frame is reported (call recording); without, the SDK's model is used as is.
    """
    model = OpenAIRealtimeSIPModel() if tap is None else _TappedSIPModel(tap)
    model.model = model_name
    return model


def model_config(
    *, call_id: str, url: str, api_key: str, settings: RealtimeSessionModelSettings
) -> RealtimeModelConfig:
    """The ``model_config`` for ``RealtimeRunner.run`` attaching to ``call_id``."""
    return {
        "call_id": call_id,
        "url": url,
        "api_key": api_key,
        "initial_model_settings": settings,
    }


async def accept_payload(
    *,
    agent: RealtimeAgent[Any],
    model_name: str,
    settings: RealtimeSessionModelSettings,
    run_config: RealtimeRunConfig,
    context: Any,
) -> dict[str, Any]:
    """The ``/accept`` body, built by the same SDK code that builds the ``session.update``
    the session sends when it attaches, so the two cannot disagree.

    Two SDK quirks are corrected: the helper builds its payload on a non-SIP model object, so
    it (1) uses the SDK's default model name and (2) fills in PCM audio formats, which on SIP
    must stay unset (SDP negotiates them) unless the operator configured them.
    """
    payload = await OpenAIRealtimeSIPModel.build_initial_session_payload(
        agent,
        context=context,
        model_config={"initial_model_settings": settings},
        run_config=run_config,
    )
    body = payload.model_dump(exclude_none=True, mode="json")
    body["model"] = model_name
    audio = body.get("audio") or {}
    configured = settings.get("audio") or {}
    for direction, flat_key in (("input", "input_audio_format"), ("output", "output_audio_format")):
        chosen = (configured.get(direction) or {}).get("format") or settings.get(flat_key)  # type: ignore[attr-defined]
        if chosen is None and isinstance(audio.get(direction), dict):
            audio[direction].pop("format", None)
    return body
