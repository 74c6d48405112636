"""The admin API against live calls: auth, list, show, hang up, transfer, reload, drain."""

from __future__ import annotations

import httpx
import pytest

from callserver.testing.fake_openai import FakeOpenAI
from tests.e2e import assert_idle, ended_record, place_call, wait_for

TOKEN = "admin-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def admin_server(start_callserver):
    return await start_callserver(admin_token=TOKEN)


async def call(server, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.request(method, f"{server.url}{path}", **kwargs)


async def test_admin_is_off_without_a_token(callserver) -> None:
    response = await call(callserver, "GET", "/admin/calls", headers=AUTH)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
async def test_wrong_or_missing_token_is_401(admin_server, headers) -> None:
    for method, path in (
        ("GET", "/admin/calls"),
        ("POST", "/admin/calls/x/hangup"),
        ("POST", "/admin/reload"),
        ("POST", "/admin/drain"),
    ):
        response = await call(admin_server, method, path, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong admin token"}
    assert not admin_server.services.manager.draining


async def test_list_show_and_hang_up_a_live_call(admin_server, fake_openai: FakeOpenAI) -> None:
    call_id, _ = await place_call(admin_server, fake_openai)
    await fake_openai.wait_connected(call_id)
    listed = (await call(admin_server, "GET", "/admin/calls", headers=AUTH)).json()
    assert [c["call_id"] for c in listed["calls"]] == [call_id]
    entry = listed["calls"][0]
    assert entry["graph"] == "frontdesk" and entry["state"] == "active"
    assert entry["current_agent"] == "Customer Service" and entry["duration_s"] >= 0
    shown = await call(admin_server, "GET", f"/admin/calls/{call_id}", headers=AUTH)
    assert shown.json()["call_id"] == call_id
    assert (
        await call(admin_server, "GET", "/admin/calls/rtc_nope", headers=AUTH)
    ).status_code == 404

    hung = await call(admin_server, "POST", f"/admin/calls/{call_id}/hangup", headers=AUTH)
    assert hung.json() == {"status": "ended", "call_id": call_id}
    record = await ended_record(admin_server, call_id)
    assert record.end_reason == "admin_hangup"
    assert fake_openai.hangup_observed(call_id)
    again = await call(admin_server, "POST", f"/admin/calls/{call_id}/hangup", headers=AUTH)
    assert again.status_code == 409
    missing = await call(admin_server, "POST", "/admin/calls/rtc_nope/hangup", headers=AUTH)
    assert missing.status_code == 404
    await assert_idle(admin_server)


async def test_transfer_a_live_call(admin_server, fake_openai: FakeOpenAI) -> None:
    call_id, _ = await place_call(admin_server, fake_openai)
    await fake_openai.wait_connected(call_id)
    bad = await call(
        admin_server,
        "POST",
        f"/admin/calls/{call_id}/transfer",
        headers=AUTH,
        json={"target_uri": "http://evil"},
    )
    assert bad.status_code == 400
    ok = await call(
        admin_server,
        "POST",
        f"/admin/calls/{call_id}/transfer",
        headers=AUTH,
        json={"target_uri": "tel:+14155550100"},
    )
    assert ok.status_code == 200
    record = await ended_record(admin_server, call_id)
    assert record.end_reason == "transferred"
    assert [r.json for r in fake_openai.requests_for(call_id, "refer")] == [
        {"target_uri": "tel:+14155550100"}
    ]


async def test_reload_and_drain(start_callserver, fake_openai: FakeOpenAI, tmp_path) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text("name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: One.\n")
    server = await start_callserver(config, admin_token=TOKEN, drain_timeout_s=0.3)
    config.write_text("name: g\nstart: a\nagents:\n  a:\n    name: A\n    nope: 1\n")
    refused = await call(server, "POST", "/admin/reload", headers=AUTH)
    assert refused.status_code == 422 and "nope" in refused.json()["details"]
    config.write_text("name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: Two.\n")
    reloaded = await call(server, "POST", "/admin/reload", headers=AUTH)
    assert reloaded.json()["status"] == "reloaded"

    call_id, _ = await place_call(server, fake_openai)
    await fake_openai.wait_connected(call_id)
    drained = await call(server, "POST", "/admin/drain", headers=AUTH)
    assert drained.json()["status"] == "draining"
    ready = await call(server, "GET", "/readyz")
    assert ready.status_code == 503
    _, late = await place_call(server, fake_openai)
    assert late.status_code == 503
    record = await ended_record(server, call_id, timeout=3)
    assert record.end_reason == "shutdown"
    await wait_for(lambda: fake_openai.hangup_observed(call_id), what="hangup")
