"""Helpers for the fake OpenAI's own tests: an accepted call, a websocket client, reading.

The fixtures built on them are in :mod:`tests.fake_openai_fixtures`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from callserver.testing.fake_openai import FakeOpenAI

AUTH = {"Authorization": "Bearer sk-test"}
ACCEPT_BODY: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You answer the phone for Acme.",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad"},
        },
        "output": {"voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
    ],
}


async def accepted_call(fake: FakeOpenAI, rest: httpx.AsyncClient) -> str:
    call_id = fake.add_call()
    response = await rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert response.status_code == 200, response.text
    return call_id


async def connect(fake: FakeOpenAI, call_id: str | None, **headers: str) -> ClientConnection:
    url = fake.realtime_url(call_id) if call_id else fake.ws_url
    return await websockets.connect(url, additional_headers=headers or AUTH, open_timeout=5)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def recv_until(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while (event := await recv(ws))["type"] != type_:
        pass
    return event


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the client sees the connection close; the code it observed."""
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code
