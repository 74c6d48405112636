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
