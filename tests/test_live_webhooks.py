"""GPT-Live webhooks over HTTP: both event names, one call on two APIs, duplicates, bad input."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, RunningServer
from callserver.testing.webhook_sender import (
    incoming_call_event,
    live_incoming_event,
    send_webhook,
    sign,
)
from tests.conftest import ROOT
from tests.e2e import ended_record, place_live_call, wait_for

LIVE_CONFIG = ROOT / "tests" / "configs" / "live_desk.yaml"
REALTIME_CONFIG = ROOT / "config" / "agents.yaml"


async def _metric(server: RunningServer, name: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize("event_type", ["live.transport.incoming", "live.call.incoming"])
async def test_both_live_event_names_start_a_call(
    start_callserver, fake_openai: FakeOpenAI, event_type: str
) -> None:
    server = await start_callserver(LIVE_CONFIG)
    session_id, response = await place_live_call(server, fake_openai, event_type=event_type)
    assert response.status_code == 200
    assert response.json() == {"status": "started", "call_id": session_id}
    await fake_openai.live.wait_attached(session_id)
    record = await server.services.manager.registry.get(session_id)
    assert record is not None and record.engine == "live" and record.graph == "live_desk"
    if event_type == "live.call.incoming":
        body = json.loads(json.dumps(live_incoming_event("x", event_type=event_type)))
        assert "type" not in body["data"]  # the deprecated event has no data.type


async def test_one_call_on_both_apis_is_accepted_once_on_the_graphs_engine(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    """OpenAI may announce one pending call as realtime.call.incoming *and*
    live.transport.incoming (unrelated ids). A Live graph acts on the Live one only; the
    Realtime webhook is answered 2xx and left alone, never rejected."""
    server = await start_callserver(LIVE_CONFIG)
    call_id, session_id = fake_openai.add_dual_call()
    url = server.webhook_url
    realtime, live = await asyncio.gather(
        send_webhook(url, TEST_WEBHOOK_SECRET, incoming_call_event(call_id)),
        send_webhook(url, TEST_WEBHOOK_SECRET, live_incoming_event(session_id)),
    )
    assert realtime.status_code == 200 and realtime.json()["status"] == "other_engine"
    assert live.status_code == 200 and live.json()["status"] == "started"
    await fake_openai.live.wait_attached(session_id)
    assert [r.action for r in fake_openai.requests_for(session_id)] == ["accept", "attach"]
    assert fake_openai.requests_for(call_id) == []  # no accept, and no reject either
    assert await server.services.manager.registry.get(call_id) is None
    assert 'callserver_webhook_other_engine_total{engine="realtime"} 1.0' in await _metric(
        server, "callserver_webhook_other_engine_total"
    )


async def test_a_realtime_graph_leaves_the_live_webhook_alone(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(REALTIME_CONFIG)
    call_id, session_id = fake_openai.add_dual_call()
    url = server.webhook_url
    live = await send_webhook(url, TEST_WEBHOOK_SECRET, live_incoming_event(session_id))
    realtime = await send_webhook(url, TEST_WEBHOOK_SECRET, incoming_call_event(call_id))
    assert live.json()["status"] == "other_engine" and realtime.json()["status"] == "started"
    await fake_openai.wait_connected(call_id)
    assert fake_openai.requests_for(session_id) == []
    assert fake_openai.calls[call_id].decision.made == "realtime:accept"


async def test_decided_elsewhere_is_left_alone(start_callserver, fake_openai: FakeOpenAI) -> None:
    """The Realtime side of the call was accepted first (by another service of the project):
    the Live accept gets decision_already_made, and callserver does nothing more to it."""
    server = await start_callserver(LIVE_CONFIG)
    call_id, session_id = fake_openai.add_dual_call()
    assert fake_openai.calls[call_id].decision.take("realtime:accept")
    await place_live_call(server, fake_openai, session_id=session_id)
    record = await ended_record(server, session_id)
    assert record.end_reason == "decided_elsewhere"
    [accept] = fake_openai.requests_for(session_id, "accept")
    assert accept.status == 409  # one attempt: not retried
    assert [r.action for r in fake_openai.requests_for(session_id)] == ["accept"]


async def test_duplicates_by_webhook_id_and_by_session_id(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(LIVE_CONFIG)
    session_id = fake_openai.live.add_session()
    url = server.webhook_url
    event = live_incoming_event(session_id)
    first = await send_webhook(url, TEST_WEBHOOK_SECRET, event, msg_id="wh_same")
    again = await send_webhook(url, TEST_WEBHOOK_SECRET, event, msg_id="wh_same")
    deprecated = live_incoming_event(session_id, event_type="live.call.incoming")
    twin = await send_webhook(url, TEST_WEBHOOK_SECRET, deprecated, msg_id="wh_other")
    assert [r.json()["status"] for r in (first, again, twin)] == [
        "started",
        "duplicate",
        "duplicate",
    ]
    await fake_openai.live.wait_attached(session_id)
    assert len(fake_openai.requests_for(session_id, "accept")) == 1


def _live_body(**data: object) -> bytes:
    event = live_incoming_event("live_abc")
    event["data"].update(data)
    for key, value in list(event["data"].items()):
        if value is _DROP:
            del event["data"][key]
    return json.dumps(event).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_live_body(session_id=42), "data.session_id must be a session id string"),
        (_live_body(session_id="../x"), "data.session_id must be a session id string"),
        (_live_body(session_id=_DROP), "data.session_id must be a session id string"),
        (_live_body(type="webrtc"), "data.type must be 'sip' for live.transport.incoming"),
        (_live_body(type=_DROP), "data.type must be 'sip' for live.transport.incoming"),
        (_live_body(sip_headers=_DROP), "data.sip_headers is required"),
        (_live_body(sip_headers={"From": "x"}), "data.sip_headers must be a list"),
        (_live_body(sip_media_security=3), "data.sip_media_security must be a string"),
    ],
)
async def test_bad_live_shapes_are_refused(
    start_callserver, fake_openai: FakeOpenAI, body: bytes, error: str
) -> None:
    server = await start_callserver(LIVE_CONFIG)
    headers = {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body)}
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(server.webhook_url, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert fake_openai.requests == []
    assert await server.services.manager.registry.live_calls() == []


async def test_unknown_media_security_is_kept(start_callserver, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(LIVE_CONFIG)
    session_id, response = await place_live_call(server, fake_openai, media_security="zrtp-2027")
    assert response.json()["status"] == "started"
    await wait_for(lambda: fake_openai.requests_for(session_id, "accept"), what="accept")
    record = await server.services.manager.registry.get(session_id)
    assert record is not None and record.media_security == "zrtp-2027"


async def test_unsigned_live_webhook_is_refused(start_callserver, fake_openai) -> None:
    server = await start_callserver(LIVE_CONFIG)
    body = json.dumps(live_incoming_event("live_abc")).encode()
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(server.webhook_url, content=body)
    assert response.status_code == 400 and "missing header" in response.json()["error"]
    assert fake_openai.requests == []
