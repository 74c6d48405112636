"""Admission before dialing: a full or draining instance and reject routes answer Twilio
without reaching OpenAI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from callserver.calls.records import CallRecord
from callserver.testing.fake_openai import FakeOpenAI
from tests.twilio_webhook_support import (
    CONFIG_DIR,
    assert_nothing_started,
    parse_dial,
    post_twilio,
    reject_reason,
    twilio_settings,
    voice_params,
)


async def test_full_instance_answers_busy(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings(max_concurrent_calls=1))
    registry = server.services.manager.registry
    await registry.put(CallRecord(call_id="rtc_someone_else"))
    response = await post_twilio(server, "/twilio/voice", voice_params())
    assert reject_reason(response) == "busy"
    record = await registry.get("rtc_someone_else")
    assert record is not None
    await registry.finished(record)
    # A slot freed: the next call dials again, and the check took no slot.
    parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    assert registry.slots_in_use() == 0  # type: ignore[attr-defined]


async def test_draining_answers_busy(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    server.services.manager.begin_drain()
    response = await post_twilio(server, "/twilio/voice", voice_params())
    assert reject_reason(response) == "busy"
    assert_nothing_started(server, fake_openai)


async def test_reject_route_answers_rejected(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    # routes.yaml: callers starting +1900 are rejected with 403.
    response = await post_twilio(
        server, "/twilio/voice", voice_params(From="+19005551234", To="+18005551212")
    )
    assert reject_reason(response) == "rejected"
    assert_nothing_started(server, fake_openai)


async def test_reject_with_configured_message(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    server.services.twilio.reject_say = "We are closed. Please call again tomorrow."
    server.services.manager.begin_drain()
    response = await post_twilio(server, "/twilio/voice", voice_params())
    root = ET.fromstring(response.text)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "We are closed. Please call again tomorrow."
