"""Bad webhook input over HTTP: precise status + JSON error, nothing started, nothing leaked."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, RunningServer
from callserver.testing.webhook_sender import incoming_call_event, sign


async def post(server: RunningServer, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.post(server.webhook_url, content=body, headers=headers)


def signed(body: bytes, **kwargs) -> dict[str, str]:
    return {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body, **kwargs)}


CALL = json.dumps(incoming_call_event("rtc_abc")).encode()


# Headers are signed when the test runs (lambdas): signed at collection, they would be stale
# by the time a long suite reaches this module.
@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "error"),
    [
        (
            "no headers",
            CALL,
            {},
            400,
            "missing header(s): webhook-id, webhook-timestamp, webhook-signature",
        ),
        (
            "bad signature",
            CALL,
            lambda: {**signed(CALL), "webhook-signature": "v1,AAAA"},
            401,
            "no matching signature",
        ),
        ("other body", CALL + b" ", lambda: signed(CALL), 401, "no matching signature"),
        (
            "stale",
            CALL,
            lambda: signed(CALL, timestamp=int(time.time()) - 301),
            400,
            "webhook-timestamp is too old",
        ),
        (
            "future",
            CALL,
            lambda: signed(CALL, timestamp=int(time.time()) + 360),
            400,
            "webhook-timestamp is in the future",
        ),
        ("not json", b"{nope", lambda: signed(b"{nope"), 400, "body is not valid JSON"),
        ("array", b"[1]", lambda: signed(b"[1]"), 400, "body must be a JSON object"),
        (
            "no type",
            b'{"id": "e", "data": {}}',
            lambda: signed(b'{"id": "e", "data": {}}'),
            400,
            "'type' must be a non-empty string",
        ),
    ],
)
async def test_bad_input(
    callserver: RunningServer, fake_openai: FakeOpenAI, name, body, headers, status, error
) -> None:
    response = await post(callserver, body, headers() if callable(headers) else headers)
    assert response.status_code == status, name
    assert response.json() == {"error": error}
    assert fake_openai.requests == []
    assert await callserver.services.manager.registry.live_calls() == []


def _call_body(**data_overrides) -> bytes:
    event = incoming_call_event("rtc_shape")
    event["data"].update(data_overrides)
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_call_body(call_id=42), "data.call_id must be a call id string"),
        (_call_body(call_id="../../etc"), "data.call_id must be a call id string"),
        (_call_body(sip_headers="From: x"), "data.sip_headers must be a list"),
        (
            _call_body(sip_headers=[{"name": "From"}]),
            "data.sip_headers[0] must be an object with string name and value",
        ),
    ],
)
async def test_wrong_shape_call(callserver: RunningServer, fake_openai, body, error) -> None:
    response = await post(callserver, body, signed(body))
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert fake_openai.requests == []


async def test_unhandled_event_type_is_ignored(callserver: RunningServer, fake_openai) -> None:
    body = json.dumps(
        {
            "object": "event",
            "id": "evt_1",
            "type": "response.completed",
            "created_at": 1,
            "data": {"id": "resp_1"},
        }
    ).encode()
    response = await post(callserver, body, signed(body))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "type": "response.completed"}
    assert fake_openai.requests == []


async def test_oversized_body_refused_without_reading_it(callserver: RunningServer) -> None:
    big = b"x" * (64 * 1024 + 1)
    response = await post(callserver, big, signed(b"{}"))
    assert response.status_code == 413
    assert response.json() == {"error": "body larger than 65536 bytes"}


async def test_oversized_chunked_body_refused(callserver: RunningServer) -> None:
    async def chunks():
        for _ in range(100):
            yield b"y" * 4096

    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(
            callserver.webhook_url, content=chunks(), headers=signed(b"{}")
        )
    assert response.status_code == 413


async def test_unknown_keys_and_odd_headers_are_tolerated(
    callserver: RunningServer, fake_openai: FakeOpenAI
) -> None:
    call_id = fake_openai.add_call()
    event = incoming_call_event(
        call_id,
        extra_headers=[("X-Tenant", "a"), ("X-Tenant", "b"), ("X-Evil", "'; DROP TABLE --")],
    )
    event["data"]["something_new"] = {"x": 1}
    event["brand_new_field"] = True
    body = json.dumps(event).encode()
    response = await post(callserver, body, signed(body))
    assert response.status_code == 200
    assert response.json()["status"] == "started"
    await fake_openai.wait_connected(call_id)


async def test_secret_and_signature_never_logged(
    callserver: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = signed(CALL)
    bad = {**headers, "webhook-signature": headers["webhook-signature"] + "x"}
    await post(callserver, CALL, bad)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    secret_part = TEST_WEBHOOK_SECRET.removeprefix("whsec_")[:12]
    assert secret_part not in text
    assert headers["webhook-signature"].split(",", 1)[1][:16] not in text
