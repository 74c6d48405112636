"""Fixtures for the fake OpenAI's own tests: ``rest`` (a REST client with a key) and ``live``
(an accepted call with a connected websocket).

A plugin module (``pytest_plugins = ["tests.fake_openai_fixtures"]`` in the test modules
that use them), so that pytest rewrites its asserts and no test module imports fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import FakeConnection
from tests.fake_openai_support import AUTH, accepted_call, connect, recv


@pytest.fixture
async def rest(fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH, timeout=5) as c:
        yield c


@pytest.fixture
async def live(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> AsyncIterator[tuple[ClientConnection, FakeConnection]]:
    """An accepted call with a connected client, ``session.created`` already read."""
    call_id = await accepted_call(fake_openai, rest)
    ws = await connect(fake_openai, call_id)
    assert (await recv(ws))["type"] == "session.created"
    conn = await fake_openai.wait_connected(call_id)
    yield ws, conn
    await ws.close()
