"""Shared fixtures. Others append theirs here: keep each fixture self-contained."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import RunningServer, run_callserver, test_settings


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started fake OpenAI on an ephemeral 127.0.0.1 port, stopped after the test."""
    async with FakeOpenAI() as fake:
        yield fake


# ---- callserver under test, on real sockets ---------------------------------------------------


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


# ---- real Redis (tests/test_redis_*.py) ------------------------------------------------------

from tests.redis_support import TEST_REDIS_URL, delete_prefix, require_redis  # noqa: E402


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis; skips (or fails under CI=true) when it is unreachable."""
    require_redis(TEST_REDIS_URL)
    return TEST_REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import uuid

    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    await delete_prefix(redis_url, prefix)


# ---- post-call events (tests/test_analysis*.py) ----------------------------------------------

from callserver.testing.postcall_receiver import PostCallReceiver  # noqa: E402
from tests.analysis_support import POSTCALL_SECRET  # noqa: E402


@pytest.fixture
async def receiver() -> AsyncIterator[PostCallReceiver]:
    """A started receiver of signed post-call events (``POSTCALL_SECRET``), stopped after."""
    async with PostCallReceiver(POSTCALL_SECRET) as started:
        yield started
