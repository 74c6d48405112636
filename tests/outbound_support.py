"""Helpers for outbound-call tests: a callserver that can dial, and its admin API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_twilio_api import FakeTwilio
from callserver.testing.harness import RunningServer, free_port, run_callserver, test_settings
from tests.conftest import ROOT
from tests.e2e import ended_record as ended
from tests.e2e import wait_for

__all__ = ["ended"]

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


async def status_of(server: RunningServer, call_id: str) -> str | None:
    response = await get(server, f"/admin/calls/{call_id}")
    return response.json().get("status") if response.status_code == 200 else None


TWILIO_TOKEN = "twilio-token-for-outbound-tests"
TWILIO_SID = "AC" + "1" * 32
SIGNING_KEY = "outbound-signing-key-for-tests-0123456789"


@contextlib.asynccontextmanager
async def twilio_callserver(
    fake: FakeOpenAI,
    config: Path = OUTBOUND_CONFIG,
    engines: tuple[str, ...] = ("realtime",),
    **overrides: Any,
) -> AsyncIterator[tuple[RunningServer, FakeTwilio]]:
    """callserver with the Twilio dialer on, and the fake Twilio it dials through."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    async with FakeTwilio(
        account_sid=TWILIO_SID,
        auth_token=TWILIO_TOKEN,
        openai=fake,
        webhook_url=f"{public}/webhooks/openai",
        engines=engines,
    ) as twilio:
        values: dict[str, Any] = {
            "admin_token": ADMIN_TOKEN,
            "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_api_url": twilio.base_url,
            "twilio_from": "+14155550177",
            "public_base_url": public,
            "outbound_signing_key": SIGNING_KEY,
            "openai_project_id": "proj_test123",
            **overrides,
        }
        settings = test_settings(fake.base_url, config, **values)
        async with run_callserver(settings, port=port) as server:
            yield server, twilio


async def wait_campaign(
    server: RunningServer, campaign_id: str, state: str = "completed", timeout: float = 20.0
) -> dict[str, Any]:
    """The campaign once in ``state``."""
    last: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal last
        last = (await get(server, f"/admin/campaigns/{campaign_id}")).json()
        return last.get("state") == state

    await wait_for(reached, timeout, f"campaign {campaign_id} {state} (last: {last})")
    return last


def concurrency_probe(fake: FakeOpenAI) -> list[int]:
    """Samples of how many outbound sessions are live at the fake, taken at every create."""
    samples: list[int] = []

    def on_create(create: Any) -> None:
        live = fake.live.sessions.values()
        samples.append(sum(1 for s in live if s.outbound and s.state != "ended"))

    fake.live.outbound.on_create = on_create
    return samples
