"""What callserver relies on in openai-agents' realtime internals (engines/realtime/sdk.py).

When the SDK is upgraded, these fail first and name what changed.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel

from callserver.engines.realtime import sdk


def test_sdk_version_within_the_tested_range() -> None:
    major, minor = (int(x) for x in version("openai-agents").split(".")[:2])
    assert (major, minor) >= (0, 24) and (major, minor) < (0, 25)


def test_private_hooks_still_exist() -> None:
    assert inspect.iscoroutinefunction(OpenAIRealtimeSIPModel._create_websocket_connection)
    assert inspect.iscoroutinefunction(OpenAIRealtimeSIPModel.build_initial_session_payload)
    assert OpenAIRealtimeSIPModel().model  # the model name is an attribute we set
    # The reattaching websocket (engines/realtime/connection.py) rides on these:
    params = inspect.signature(OpenAIRealtimeSIPModel.__init__).parameters
    assert "transport_config" in params
    listen = inspect.getsource(OpenAIRealtimeSIPModel._listen_for_messages)
    assert "async for message in self._websocket" in listen


def test_make_model_sets_the_model_name_and_tap() -> None:
    plain = sdk.make_model("gpt-realtime")
    assert isinstance(plain, OpenAIRealtimeSIPModel) and plain.model == "gpt-realtime"
    seen: list[tuple[str, dict]] = []
    tapped = sdk.make_model("gpt-realtime-mini", lambda kind, data: seen.append((kind, data)))
    assert isinstance(tapped, OpenAIRealtimeSIPModel) and tapped.model == "gpt-realtime-mini"


def test_sdk_type_adapters_are_built_once_per_type() -> None:
    """The SDK builds a pydantic adapter per raw message and per conversation item; ours
    (installed by sdk.py) builds one per type and converts exactly as the SDK did."""
    from agents.realtime import openai_realtime
    from agents.realtime.model_inputs import RealtimeModelSendRawMessage

    assert openai_realtime.TypeAdapter is sdk._type_adapter
    source = inspect.getsource(openai_realtime._ConversionHelper.try_convert_raw_message)
    assert "TypeAdapter(OpenAIRealtimeClientEvent)" in source
    message = RealtimeModelSendRawMessage(
        message={"type": "response.create", "other_data": {"response": {"instructions": "Hi"}}}
    )
    first = openai_realtime._ConversionHelper.try_convert_raw_message(message)
    assert first is not None and first.type == "response.create"
    assert first.response is not None and first.response.instructions == "Hi"
    bad = RealtimeModelSendRawMessage(message={"type": "no.such.event"})
    assert openai_realtime._ConversionHelper.try_convert_raw_message(bad) is None
    assert sdk._type_adapter(int) is sdk._type_adapter(int)


def test_control_websocket_mirrors_the_sdk_connect_without_compression() -> None:
    """``open_control`` replaces the SDK's ``websockets.connect`` call: the same keyword
    arguments (so an SDK upgrade that adds one shows up here), plus ``compression=None``."""
    source = inspect.getsource(OpenAIRealtimeSIPModel._create_websocket_connection)
    for key in ("user_agent_header", "additional_headers", "max_size", "ping_interval"):
        assert f'"{key}"' in source
    assert "websockets.connect(url, **connect_kwargs)" in source
    assert "max_size" in source and "8 * 1024 * 1024" in source


async def test_control_websocket_offers_no_permessage_deflate() -> None:
    from websockets.asyncio.server import serve

    seen: list[str | None] = []

    async def handler(connection) -> None:  # type: ignore[no-untyped-def]
        seen.append(connection.request.headers.get("Sec-WebSocket-Extensions"))
        await connection.send("hello")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        connection = await sdk.open_control(
            f"ws://127.0.0.1:{port}/", {"Authorization": "Bearer k"}, sdk.TRANSPORT
        )
        try:
            assert await connection.recv() == "hello"
            assert connection.request is not None
            assert connection.request.headers["Authorization"] == "Bearer k"
            assert connection.request.headers["User-Agent"].startswith("Agents/Python")
        finally:
            await connection.close()
    assert seen == [None]
