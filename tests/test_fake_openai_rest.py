"""The fake OpenAI's call-control REST, through real sockets: auth, 404s, bodies, scripting."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from callserver.testing.fake_openai import FakeOpenAI
from tests.fake_openai_support import (
    ACCEPT_BODY,
    accepted_call,
    close_code,
    connect,
)

pytest_plugins = ["tests.fake_openai_fixtures"]
"""The ``rest`` and ``live`` fixtures."""


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "sk"}])
async def test_rest_requires_bearer_token(fake_openai: FakeOpenAI, headers: dict) -> None:
    call_id = fake_openai.add_call()
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=headers) as client:
        response = await client.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fake_openai.call_state(call_id) == "ringing"
    assert fake_openai.requests_for(call_id, "accept")[0].status == 401


async def test_unknown_and_ended_calls_are_404(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    response = await rest.post("/realtime/calls/rtc_nope/hangup")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    call_id = fake_openai.add_call()
    assert (await rest.post(f"/realtime/calls/{call_id}/reject", json={})).status_code == 200
    assert fake_openai.calls[call_id].reject_status == 603
    assert (await rest.post(f"/realtime/calls/{call_id}/hangup")).status_code == 404
    assert fake_openai.call_state(call_id) == "ended"
    assert fake_openai.hangup_observed(call_id)


async def test_accept_valid_body_once(fake_openai: FakeOpenAI, rest: httpx.AsyncClient) -> None:
    call_id = await accepted_call(fake_openai, rest)
    assert fake_openai.call_state(call_id) == "accepted"
    assert fake_openai.calls[call_id].session == ACCEPT_BODY
    (request,) = fake_openai.requests_for(call_id, "accept")
    assert (request.method, request.status, request.json) == ("POST", 200, ACCEPT_BODY)
    assert request.path == f"/v1/realtime/calls/{call_id}/accept"
    again = await rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY)
    assert again.status_code == 400
    assert again.json()["error"]["type"] == "invalid_request_error"


async def test_accept_invalid_body_is_400_and_recorded(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    body = {**ACCEPT_BODY, "voice": "marin"}  # beta field, not GA
    response = await rest.post(f"/realtime/calls/{call_id}/accept", json=body)
    assert response.status_code == 400
    assert "voice" in response.json()["error"]["message"]
    assert fake_openai.call_state(call_id) == "ringing"
    ((cid, action, errs),) = fake_openai.rest_schema_errors
    assert (cid, action) == (call_id, "accept") and any("voice" in e for e in errs)
    assert fake_openai.requests_for(call_id)[0].errors == errs


async def test_refer_validates_and_then_ends_the_call(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = await accepted_call(fake_openai, rest)
    ws = await connect(fake_openai, call_id)
    url = f"/realtime/calls/{call_id}/refer"
    assert (await rest.post(url, json={"target": "tel:+1"})).status_code == 400
    assert (await rest.post(url, json={"target_uri": "tel:+14155550123"})).status_code == 200
    assert fake_openai.calls[call_id].refer_target == "tel:+14155550123"
    assert await close_code(ws) == 1000
    assert fake_openai.call_state(call_id) == "ended"
    assert fake_openai.calls[call_id].ended_by == "refer"


async def test_scripted_failures_are_consumed_in_order(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    other = fake_openai.add_call()
    fake_openai.fail("accept", status=503, times=2)
    fake_openai.fail("accept", status=429, call_id=other, body={"error": {"message": "slow"}})
    url = f"/realtime/calls/{call_id}/accept"
    first = await rest.post(url, json=ACCEPT_BODY)
    assert first.status_code == 503 and first.json()["error"]["type"] == "server_error"
    assert (await rest.post(url, json=ACCEPT_BODY)).status_code == 503
    assert (await rest.post(url, json=ACCEPT_BODY)).status_code == 200
    response = await rest.post(f"/realtime/calls/{other}/accept", json=ACCEPT_BODY)
    assert (response.status_code, response.json()) == (429, {"error": {"message": "slow"}})
    assert [r.status for r in fake_openai.requests] == [503, 503, 200, 429]


async def test_scripted_delay_holds_the_request(
    fake_openai: FakeOpenAI, rest: httpx.AsyncClient
) -> None:
    call_id = fake_openai.add_call()
    fake_openai.delay("accept", 0.3)
    task = asyncio.create_task(rest.post(f"/realtime/calls/{call_id}/accept", json=ACCEPT_BODY))
    await asyncio.sleep(0.1)
    assert [r.status for r in fake_openai.requests_for(call_id)] == [0]  # still in flight
    assert (await task).status_code == 200
    assert (await rest.post(f"/realtime/calls/{call_id}/hangup")).status_code == 200
