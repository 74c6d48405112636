"""Shared fixtures. Others append theirs here: keep each fixture self-contained."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callserver.testing.fake_openai import FakeOpenAI


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started fake OpenAI on an ephemeral 127.0.0.1 port, stopped after the test."""
    async with FakeOpenAI() as fake:
        yield fake


# ---- callserver under test, on real sockets ---------------------------------------------------

from collections.abc import AsyncIterator, Callable  # noqa: E402
from contextlib import AsyncExitStack  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from callserver.testing.harness import RunningServer, run_callserver, test_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "agents.yaml"

StartServer = Callable[..., Any]


@pytest.fixture
async def start_callserver(fake_openai: FakeOpenAI) -> AsyncIterator[StartServer]:
    """Factory: ``server = await start_callserver(**settings_overrides)``; all stopped after."""
    async with AsyncExitStack() as stack:

        async def start(config: Path | str = DEFAULT_CONFIG, **overrides: Any) -> RunningServer:
            settings = test_settings(fake_openai.base_url, config, **overrides)
            return await stack.enter_async_context(run_callserver(settings))

        yield start


@pytest.fixture
async def callserver(start_callserver: StartServer) -> RunningServer:
    """callserver on the bundled config/agents.yaml, pointed at the fake OpenAI."""
    return await start_callserver()
