"""Twilio status callbacks end calls through the one end path; the full Twilio call flow."""

from __future__ import annotations

from typing import Any

import pytest

from callserver.calls.registry import RegistryUnavailable
from callserver.calls.twilio_calls import StatusMemory
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, RunningServer
from tests.e2e import assert_idle, ended_record, wait_for
from tests.twilio_webhook_support import (
    CALL_SID,
    CONFIG_DIR,
    PROJECT,
    parse_dial,
    post_twilio,
    twilio_settings,
    voice_params,
)

CHILD_SID = "CA" + "fedcba9876543210" * 2


def status_params(call_sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "f" * 32,
        "CallStatus": status,
        "From": "+14155550123",
        "To": "+18005550100",
        **extra,
    }


async def openai_rings(
    server: RunningServer, fake: FakeOpenAI, headers: list[tuple[str, str]]
) -> str:
    """OpenAI's webhook for the INVITE Twilio sent (To: the project's SIP user)."""
    call_id, response = await fake.send_incoming_call(
        server.webhook_url, TEST_WEBHOOK_SECRET, to=PROJECT, extra_headers=headers
    )
    assert response.status_code == 200, response.text
    return call_id


def test_status_memory_expires_and_stays_bounded() -> None:
    now = [0.0]
    memory = StatusMemory(ttl_s=10, max_items=3, clock=lambda: now[0])
    assert memory.remember("CA1", "completed")
    assert not memory.remember("CA1", "failed")  # first one wins
    assert memory.get("CA1") == "completed"
    now[0] = 11
    assert memory.get("CA1") is None
    for i in range(5):
        memory.remember(f"CA{i + 10}", "busy")
    assert len(memory) == 3
    assert memory.get("CA14") == "busy" and memory.get("CA10") is None


async def test_full_twilio_flow(start_callserver: Any, fake_openai: FakeOpenAI) -> None:
    """Voice webhook -> TwiML -> OpenAI webhook with the same CallSid -> accept -> session
    -> Twilio ``completed`` -> hangup at OpenAI -> no live call."""
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    _, _, _, sip_headers = parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))

    # Twilio dials: the INVITE carries our X- headers plus its own X-Twilio-CallSid.
    call_id = await openai_rings(
        server, fake_openai, [*sip_headers.items(), ("X-Twilio-CallSid", CALL_SID)]
    )
    await wait_for(lambda: fake_openai.requests_for(call_id, "accept"), what="accept")
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    manager = server.services.manager
    # Routed by the number the caller dialed at Twilio, not the project's SIP user.
    live = await manager.registry.get(call_id)
    assert live is not None and live.graph == "orders" and live.route == "orders-line"
    assert live.dialed == PROJECT
    await wait_for(lambda: manager.session(call_id) is not None, what="attached session")

    # Progress is recorded on the live call, nothing more.
    ringing = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "in-progress"))
    assert ringing.json() == {"status": "recorded"}
    record = await manager.registry.by_call_sid(CALL_SID)
    assert record is not None and record.twilio_status == "in-progress"
    assert not fake_openai.hangup_observed(call_id)

    # The caller hangs up at Twilio.
    completed = await post_twilio(
        server, "/twilio/status", status_params(CALL_SID, "completed", CallDuration="42")
    )
    assert completed.status_code == 200
    assert completed.json() == {"status": "ended"}
    record = await ended_record(server, call_id)
    assert record.end_reason == "twilio:completed"
    assert record.twilio_status == "completed"
    assert record.twilio_call_sid == CALL_SID
    assert fake_openai.hangup_observed(call_id)
    await assert_idle(server)

    # Late and repeated callbacks change nothing.
    again = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "completed"))
    assert again.json() == {"status": "duplicate"}
    late = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "ringing"))
    assert late.json() == {"status": "ignored"}
    action = await post_twilio(
        server,
        "/twilio/dial-action",
        {"CallSid": CALL_SID, "DialCallStatus": "completed", "CallStatus": "in-progress"},
    )
    assert action.status_code == 200
    assert "<Hangup />" in action.text or "<Hangup/>" in action.text
    assert len(fake_openai.requests_for(call_id, "hangup")) == 1
    assert (await manager.registry.get(call_id)).end_reason == "twilio:completed"  # type: ignore[union-attr]
    await assert_idle(server)


async def test_child_leg_sid_and_dial_action(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    """X-Twilio-CallSid names the <Dial> child leg; the Dial action names the parent: our
    X-Callserver-CallSid header links the two."""
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    _, _, _, sip_headers = parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    call_id = await openai_rings(
        server, fake_openai, [*sip_headers.items(), ("X-Twilio-CallSid", CHILD_SID)]
    )
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    # The <Sip> noun's callback: the child leg, with its parent.
    answered = await post_twilio(
        server,
        "/twilio/status",
        status_params(CHILD_SID, "in-progress", ParentCallSid=CALL_SID),
    )
    assert answered.json() == {"status": "recorded"}
    # The Dial action names the parent leg only (no DialCallSid here on purpose).
    action = await post_twilio(
        server,
        "/twilio/dial-action",
        {"CallSid": CALL_SID, "DialCallStatus": "no-answer", "CallStatus": "in-progress"},
    )
    assert action.status_code == 200 and "Hangup" in action.text
    record = await ended_record(server, call_id)
    assert record.end_reason == "twilio:no-answer"
    assert fake_openai.hangup_observed(call_id)
    await assert_idle(server)
    assert server.services.manager.registry.call_sid_links() == 0  # both SIDs unlinked


async def test_status_before_webhook_rejects_the_late_call(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    _, _, _, sip_headers = parse_dial(await post_twilio(server, "/twilio/voice", voice_params()))
    # The caller gives up while the INVITE is still on its way to OpenAI.
    early = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "canceled"))
    assert early.json() == {"status": "remembered"}
    duplicate = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "canceled"))
    assert duplicate.json() == {"status": "duplicate"}

    call_id = await openai_rings(
        server, fake_openai, [*sip_headers.items(), ("X-Twilio-CallSid", CALL_SID)]
    )
    record = await ended_record(server, call_id)
    assert record.end_reason == "rejected:precheck"
    rejects = fake_openai.requests_for(call_id, "reject")
    assert len(rejects) == 1 and rejects[0].json == {"status_code": 603}
    assert fake_openai.requests_for(call_id, "accept") == []
    assert fake_openai.connections.get(call_id) is None
    await assert_idle(server)

    # Only our own header survived (X-Twilio-CallSid is the child leg): still rejected.
    other = await openai_rings(
        server, fake_openai, [*sip_headers.items(), ("X-Twilio-CallSid", CHILD_SID)]
    )
    assert (await ended_record(server, other)).end_reason == "rejected:precheck"
    assert fake_openai.requests_for(other, "accept") == []
    await assert_idle(server)


async def test_unrelated_status_changes_nothing(
    start_callserver: Any, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    call_id = await openai_rings(server, fake_openai, [("X-Twilio-CallSid", CALL_SID)])
    conn = await fake_openai.wait_connected(call_id)
    await conn.expect("session.update")
    other = await post_twilio(server, "/twilio/status", status_params(CHILD_SID, "completed"))
    assert other.json() == {"status": "remembered"}
    assert server.services.manager.active_count == 1
    assert not fake_openai.hangup_observed(call_id)
    ended = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "busy"))
    assert ended.json() == {"status": "ended"}
    assert (await ended_record(server, call_id)).end_reason == "twilio:busy"
    await assert_idle(server)


async def test_registry_outage_refuses_without_forgetting_the_caller(
    start_callserver: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared registry that cannot answer: new Twilio calls hear busy, a terminal status
    is answered 503 and not remembered, so Twilio's retry is acted on once it is back."""
    server = await start_callserver(CONFIG_DIR, **twilio_settings())
    registry = server.services.manager.registry

    async def unavailable(*args: Any) -> Any:
        raise RegistryUnavailable("redis down")

    with monkeypatch.context() as patch:
        patch.setattr(registry, "live_calls", unavailable)
        patch.setattr(registry, "by_call_sid", unavailable)
        busy = await post_twilio(server, "/twilio/voice", voice_params())
        assert "<Reject" in busy.text and 'reason="busy"' in busy.text
        status = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "failed"))
        assert status.status_code == 503
        action = await post_twilio(
            server, "/twilio/dial-action", {"CallSid": CALL_SID, "DialCallStatus": "failed"}
        )
        assert action.status_code == 200 and "Hangup" in action.text
    assert await server.services.manager.registry.status_of(CALL_SID) is None
    retry = await post_twilio(server, "/twilio/status", status_params(CALL_SID, "failed"))
    assert retry.json() == {"status": "remembered"}


@pytest.mark.parametrize("say", [None, "All our agents are busy. Please call again later."])
async def test_caller_refused_at_the_sip_leg_hears_the_refusal(
    start_callserver: Any, fake_openai: FakeOpenAI, say: str | None
) -> None:
    """Two callers at the same instant with room for one (issue 13, item 4): both get
    ``<Dial>``, OpenAI's leg of the second is refused 486, and the ``<Dial action>`` answers
    the refusal a caller refused at the voice webhook hears (the message, or busy)."""
    import asyncio
    import xml.etree.ElementTree as ET

    server = await start_callserver(
        CONFIG_DIR, **twilio_settings(max_concurrent_calls=1, twilio_reject_say=say)
    )
    sids = [CALL_SID, "CA" + "1" * 32]
    answers = await asyncio.gather(
        *(post_twilio(server, "/twilio/voice", voice_params(sid)) for sid in sids)
    )
    dialed = [parse_dial(answer)[3] for answer in answers]  # both dial: nothing live yet
    first = await openai_rings(
        server, fake_openai, [*dialed[0].items(), ("X-Twilio-CallSid", "CA" + "2" * 32)]
    )
    await fake_openai.wait_connected(first)
    second = await openai_rings(
        server, fake_openai, [*dialed[1].items(), ("X-Twilio-CallSid", "CA" + "3" * 32)]
    )
    assert (await ended_record(server, second)).end_reason == "rejected:capacity"
    assert fake_openai.requests_for(second, "reject")[0].json == {"status_code": 486}

    action = await post_twilio(
        server,
        "/twilio/dial-action",
        {
            "CallSid": sids[1],
            "DialCallSid": "CA" + "3" * 32,
            "DialCallStatus": "busy",
            "DialSipResponseCode": "486",
            "CallStatus": "ringing",
        },
    )
    assert action.status_code == 200
    root = ET.fromstring(action.text)
    if say is None:
        assert [(c.tag, c.get("reason")) for c in root] == [("Reject", "busy")], action.text
    else:
        assert [c.tag for c in root] == ["Say", "Hangup"], action.text
        assert root[0].text == say
    assert server.services.manager.active_count == 1  # the first caller is unaffected
    assert not fake_openai.hangup_observed(first)
