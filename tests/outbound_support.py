"""Helpers for outbound-call tests: a callserver that can dial, and its admin API."""

from __future__ import annotations

from typing import Any

import httpx

from callserver.calls.records import CallRecord
from callserver.testing.harness import RunningServer
from tests.conftest import ROOT
from tests.e2e import wait_for

OUTBOUND_CONFIG = ROOT / "tests" / "configs" / "outbound"
ADMIN_TOKEN = "admin-token-for-outbound-tests"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
TRUNK = {
    "sip_trunk_url": "sips:sip.example.com:5061",
    "sip_trunk_username": "trunk-user",
    "sip_trunk_password": "trunk-secret-password",
    "caller_number": "+14155550199",
}
"""Settings for the GPT-Live dialer (the fake validates them as GPT-Live would)."""
LIVE_DIALER: dict[str, Any] = {"admin_token": ADMIN_TOKEN, **TRUNK}


async def post(server: RunningServer, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.url + path, json=body, headers=AUTH)


async def get(server: RunningServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(server.url + path, headers=AUTH)


async def place(server: RunningServer, **body: Any) -> httpx.Response:
    return await post(server, "/admin/calls", body)


async def ended(server: RunningServer, call_id: str, timeout: float = 10.0) -> CallRecord:
    registry = server.services.manager.registry

    async def done() -> bool:
        record = await registry.get(call_id)
        return record is not None and record.state.value == "ended"

    await wait_for(done, timeout, f"outbound call {call_id} to end")
    record = await registry.get(call_id)
    assert record is not None
    return record


async def status_of(server: RunningServer, call_id: str) -> str | None:
    response = await get(server, f"/admin/calls/{call_id}")
    return response.json().get("status") if response.status_code == 200 else None
