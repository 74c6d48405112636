"""Everything callserver needs from the agents SDK's realtime internals, in one place.

``openai-agents`` changes its realtime module often. This module is the only one that calls
SDK helpers beyond the documented ``RealtimeRunner``/``RealtimeSession`` surface, so an
upgrade is checked here (and by ``tests/test_sdk_contract.py``), nowhere else.
"""

from __future__ import annotations

import functools
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeRunConfig, openai_realtime
from agents.realtime.config import RealtimeSessionModelSettings
from agents.realtime.model import RealtimeModelConfig
from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel, TransportConfig
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as connect_websocket

from callserver.engines.base import ControlObserver, FrameTap, ReattachPolicy
from callserver.engines.realtime.connection import ReattachingConnection


@functools.cache
def _shared_adapter(type_: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_)


def _type_adapter(type_: Any, *args: Any, **kwargs: Any) -> TypeAdapter[Any]:
    """``TypeAdapter(type_)``, built once per type.

    The SDK's realtime model builds a new pydantic ``TypeAdapter`` for every raw message it
    sends (our greeting, ``say``) and for every conversation item it receives: ~10 ms of
    schema generation each, the largest single cost of setting up a call. An adapter is
    immutable, so one per type is the same validation. Installed into that one SDK module
    (checked by ``tests/test_sdk_contract.py``); anything with options is left uncached.
    """
    if args or kwargs:
        return TypeAdapter(type_, *args, **kwargs)
    return _shared_adapter(type_)


openai_realtime.TypeAdapter = _type_adapter  # type: ignore[misc,assignment]

TRANSPORT: TransportConfig = {"ping_interval": 5.0, "ping_timeout": 5.0, "handshake_timeout": 5.0}
"""Keepalive pings find a dead control connection (no close, no RST) within ~10 s; the
handshake bound keeps one reattach attempt well inside the reattach budget."""


MAX_FRAME = 8 * 1024 * 1024
"""The SDK's own frame limit (a long ``session.updated`` with many tools is large)."""


async def open_control(
    url: str, headers: dict[str, str], transport: TransportConfig
) -> ClientConnection:
    """The control websocket, opened the way the SDK opens it but without
    permessage-deflate.

    A SIP control connection carries small JSON events (the audio goes over RTP), so
    compression saves little on the wire while zlib's per-connection state is ~50 KiB:
    a third of what an attached call costs, and CPU on every frame. A client that does not
    offer the extension is valid for any server, so nothing depends on OpenAI's support.
    """
    return await connect_websocket(
        url,
        user_agent_header=openai_realtime._USER_AGENT,
        additional_headers=headers,
        max_size=transport.get("max_size", MAX_FRAME),
        ping_interval=transport.get("ping_interval", 20.0),
        ping_timeout=transport.get("ping_timeout", 20.0),
        open_timeout=transport.get("handshake_timeout", 10.0),
        compression=None,
    )


class CallSIPModel(OpenAIRealtimeSIPModel):
    """The SDK's SIP model on a :class:`ReattachingConnection`: the SDK keeps one websocket
    for its whole session, so the stand-in reconnects underneath it (and taps frames)."""

    def __init__(
        self,
        *,
        call_id: str,
        policy: ReattachPolicy,
        tap: FrameTap | None,
        observer: ControlObserver | None,
        held: bool = False,
    ) -> None:
        super().__init__(transport_config=TRANSPORT)
        self.held = held
        """Attach with events held back (an instance taking a call over; ``gate.py``)."""
        self._call = call_id
        self._policy = policy
        self._frame_tap = tap
        self._observer = observer
        self.connection: ReattachingConnection | None = None

    async def _create_websocket_connection(
        self, url: str, headers: dict[str, str], transport_config: TransportConfig | None = None
    ) -> Any:
        async def connect() -> ClientConnection:
            return await open_control(url, headers, transport_config or TRANSPORT)

        self.connection = ReattachingConnection(
            await connect(),
            connect,
            call_id=self._call,
            policy=self._policy,
            tap=self._frame_tap,
            observer=self._observer,
            held=self.held,
        )
        return self.connection


def make_model(
    model_name: str,
    tap: FrameTap | None = None,
    *,
    call_id: str = "",
    policy: ReattachPolicy | None = None,
    observer: ControlObserver | None = None,
    held: bool = False,
) -> OpenAIRealtimeSIPModel:
    """A fresh SIP model object for one call (a model object connects exactly once).

    The SDK refuses ``model_name`` in the settings together with ``call_id``; the model
    that goes into its ``session.update`` is the attribute set here. Its websocket
    reattaches after a drop (``policy``) and reports every frame to ``tap`` when given.
    """
    model = CallSIPModel(
        call_id=call_id, policy=policy or ReattachPolicy(), tap=tap, observer=observer, held=held
    )
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
