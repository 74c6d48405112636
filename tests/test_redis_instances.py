"""Several callserver processes sharing one Redis and one fake OpenAI (issue 7).

Real ``callserver serve`` processes on their own ports, all pointed at one fake OpenAI and at
the test Redis under a key prefix of their own, with a short lease so a killed owner is
noticed in about a second. Starting a process costs seconds, so one fleet of three serves the
module's tests in order (each leaves no call behind; the ``kill -9`` test comes last), and
the Redis-outage test runs its own pair behind a cuttable link.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from twilio.request_validator import RequestValidator

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET
from callserver.testing.webhook_sender import incoming_call_event, send_webhook
from tests.e2e import wait_for
from tests.fleet import LEASE_S, PUBLIC, TWILIO_TOKEN, Fleet, Instance
from tests.redis_support import TcpProxy, delete_prefix

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake_openai:
        yield fake_openai


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fleet(
    fake: FakeOpenAI, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    """Three instances (a, b, c), each carrying at most 2 calls, 4 across the fleet."""
    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    f = Fleet(fake, redis_url, prefix, tmp_path_factory.mktemp("fleet"))
    try:
        await f.start(3, CALLSERVER_MAX_CALLS="2", CALLSERVER_FLEET_MAX_CALLS="4")
        yield f
    finally:
        await f.aclose()
        await delete_prefix(redis_url, prefix)


def accepts(fake: FakeOpenAI, call_id: str) -> int:
    return len(fake.requests_for(call_id, "accept"))


async def test_deliveries_spread_over_instances_accept_once(fleet: Fleet) -> None:
    fake = fleet.fake
    call_id = fake.add_call()
    event = incoming_call_event(call_id)
    redelivery = f"wh_{uuid.uuid4().hex}"
    sends = [
        send_webhook(
            fleet.instances[n % 3].webhook_url,
            TEST_WEBHOOK_SECRET,
            event,
            msg_id=redelivery if n % 2 else None,  # redeliveries and distinct deliveries
            client=fleet.http,
        )
        for n in range(30)
    ]
    responses = await asyncio.gather(*sends)
    assert [r.status_code for r in responses] == [200] * 30
    outcomes = [r.json()["status"] for r in responses]
    assert outcomes.count("started") == 1, outcomes
    await fake.wait_connected(call_id)
    await asyncio.sleep(0.3)
    assert accepts(fake, call_id) == 1
    assert len(fake.requests_for(call_id, "realtime")) == 1
    await fake.caller_hangs_up(call_id)
    await fleet.wait_idle()


async def test_status_callback_on_another_instance_ends_the_call(fleet: Fleet) -> None:
    a, b, c = fleet.instances
    call_sid = "CA" + uuid.uuid4().hex
    call_id = await fleet.place_call(a, extra_headers=[("X-Twilio-CallSid", call_sid)])

    listed = (await fleet.admin(c, "GET", "/admin/calls")).json()["calls"]
    assert [x["call_id"] for x in listed] == [call_id]  # any instance lists every call

    form = {"CallSid": call_sid, "CallStatus": "completed", "AccountSid": "AC" + "f" * 32}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + "/twilio/status", form)
    response = await fleet.http.post(
        b.url + "/twilio/status", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ended"
    await wait_for(lambda: fleet.fake.hangup_observed(call_id), what="hangup at OpenAI")

    async def ended_on_owner() -> bool:
        record = (await fleet.admin(a, "GET", f"/admin/calls/{call_id}")).json()
        return record.get("state") == "ended"

    await wait_for(ended_on_owner, what="owner ended the call")
    record = (await fleet.admin(c, "GET", f"/admin/calls/{call_id}")).json()
    assert record["end_reason"] == "twilio:completed"
    assert len(fleet.fake.requests_for(call_id, "hangup")) == 1


async def twilio_post(fleet: Fleet, instance: Instance, path: str, form: dict[str, str]) -> Any:
    """A signed Twilio form webhook, as Twilio sends it to the public URL."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, form)
    response = await fleet.http.post(
        instance.url + path, data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200, response.text
    return response.json()


def twilio_legs() -> tuple[str, str, list[tuple[str, str]]]:
    """(the number's CallSid, the <Dial> leg's, the INVITE's headers naming both)."""
    parent, child = "CA" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    return parent, child, [("X-Callserver-CallSid", parent), ("X-Twilio-CallSid", child)]


async def test_number_status_on_another_instance_ends_the_call(fleet: Fleet) -> None:
    """The number's own status callback names the caller's CallSid (our
    X-Callserver-CallSid), not the SIP leg's: the link is shared (issue 13, item 5)."""
    a, b, _ = fleet.instances
    parent, _, headers = twilio_legs()
    call_id = await fleet.place_call(a, extra_headers=headers)
    answer = await twilio_post(
        fleet, b, "/twilio/status", {"CallSid": parent, "CallStatus": "completed"}
    )
    assert answer == {"status": "ended"}
    await wait_for(lambda: fleet.fake.hangup_observed(call_id), what="hangup at OpenAI")

    async def ended() -> bool:
        record = (await fleet.admin(a, "GET", f"/admin/calls/{call_id}")).json()
        return record.get("end_reason") == "twilio:completed"

    await wait_for(ended, what="ended as twilio:completed")
    await fleet.wait_idle()


@pytest.mark.parametrize("status", ["completed", "canceled"])
async def test_status_before_webhook_on_another_instance_rejects_the_call(
    fleet: Fleet, status: str
) -> None:
    """The caller hangs up while the INVITE is in flight; Twilio tells instance b, OpenAI's
    late webhook reaches instance a: a declines the call (issue 13, item 5)."""
    a, b, _ = fleet.instances
    parent, _, headers = twilio_legs()
    answer = await twilio_post(
        fleet, b, "/twilio/status", {"CallSid": parent, "CallStatus": status}
    )
    assert answer == {"status": "remembered"}
    call_id, response = await fleet.fake.send_incoming_call(
        a.webhook_url, TEST_WEBHOOK_SECRET, client=fleet.http, extra_headers=headers
    )
    assert response.status_code == 200, response.text
    await wait_for(lambda: fleet.fake.requests_for(call_id, "reject"), what="reject")
    assert fleet.fake.requests_for(call_id, "reject")[0].json == {"status_code": 603}
    assert accepts(fleet.fake, call_id) == 0
    await fleet.wait_idle()


async def test_admin_hangup_on_another_instance_reaches_the_owner(fleet: Fleet) -> None:
    a, b, _ = fleet.instances
    call_id = await fleet.place_call(a)
    response = await fleet.admin(b, "POST", f"/admin/calls/{call_id}/hangup")
    assert response.status_code == 200, response.text
    await wait_for(lambda: fleet.fake.hangup_observed(call_id), what="hangup at OpenAI")

    async def admin_reason() -> bool:
        record = (await fleet.admin(b, "GET", f"/admin/calls/{call_id}")).json()
        return record.get("end_reason") == "admin_hangup"

    await wait_for(admin_reason, what="ended as admin_hangup")


async def test_global_cap_holds_under_a_burst_across_instances(fleet: Fleet) -> None:
    fake = fleet.fake
    ids = [fake.add_call() for _ in range(9)]
    responses = await asyncio.gather(
        *(
            send_webhook(
                fleet.instances[n % 3].webhook_url,
                TEST_WEBHOOK_SECRET,
                incoming_call_event(call_id),
                client=fleet.http,
            )
            for n, call_id in enumerate(ids)
        )
    )
    assert [r.status_code for r in responses] == [200] * 9

    def settled() -> bool:
        return all(fake.requests_for(c, "accept") or fake.requests_for(c, "reject") for c in ids)

    await wait_for(settled, what="every call accepted or rejected")
    accepted = [c for c in ids if accepts(fake, c)]
    assert len(accepted) == 4
    rejected = [c for c in ids if fake.requests_for(c, "reject")]
    assert len(rejected) == 5
    for call_id in accepted:
        await fake.wait_connected(call_id)
        await fake.caller_hangs_up(call_id)
    await fleet.wait_idle()


async def test_instance_cap_is_per_instance(fleet: Fleet) -> None:
    """CALLSERVER_MAX_CALLS is what one process carries (issue 13, item 2): a full instance
    refuses (486) while another still has room under the fleet cap."""
    a, b, _ = fleet.instances
    on_a = [await fleet.place_call(a) for _ in range(2)]
    refused, response = await fleet.fake.send_incoming_call(
        a.webhook_url, TEST_WEBHOOK_SECRET, client=fleet.http
    )
    assert response.status_code == 200, response.text
    await wait_for(lambda: fleet.fake.requests_for(refused, "reject"), what="reject on a")
    assert fleet.fake.requests_for(refused, "reject")[0].json == {"status_code": 486}
    on_b = await fleet.place_call(b)  # 3 of the fleet's 4: accepted
    for call_id in [*on_a, on_b]:
        await fleet.fake.caller_hangs_up(call_id)
    await fleet.wait_idle()


async def test_killed_owner_calls_are_adopted_by_a_survivor(fleet: Fleet) -> None:
    """Last of the shared fleet's tests: it kills instance a. Its calls are adopted by one
    survivor each and go on answering tool calls; only a call that cannot be reattached
    (OpenAI refuses the new control connection) is hung up, as owner_lost."""
    from callserver.testing import server_events as ev

    a, b, c = fleet.instances
    calls = [await fleet.place_call(a)]  # a takes 2 calls at most
    refused = await fleet.place_call(a)
    fleet.fake.fail("realtime", 403, times=100, call_id=refused)
    a.proc.kill()  # kill -9: no drain, no goodbye
    await a.proc.wait()
    started = asyncio.get_running_loop().time()
    for call_id in calls:
        conn = await fleet.fake.wait_connected(call_id, index=1, timeout=LEASE_S * 2 + 5)
        await conn.send(ev.function_call_turn("get_weather", {"city": "Rome"}, call_id="fc_r"))
        output = await conn.expect(
            "conversation.item.create", lambda e: e["item"].get("call_id") == "fc_r"
        )
        assert "Rome" in output["item"]["output"]
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < LEASE_S * 2 + 3, elapsed
    for call_id in calls:
        record = (await fleet.admin(b, "GET", f"/admin/calls/{call_id}")).json()
        assert record["state"] == "active", record
        assert not fleet.fake.hangup_observed(call_id)
    owners = {
        (await fleet.admin(i, "GET", "/admin/calls")).json()["calls"][0]["call_id"]
        for i in (b, c)
        if (await fleet.admin(i, "GET", "/admin/calls")).json()["calls"]
    }
    assert owners  # listed by the survivors

    async def recorded() -> bool:
        record = (await fleet.admin(b, "GET", f"/admin/calls/{refused}")).json()
        return (record["state"], record["end_reason"]) == ("ended", "owner_lost")

    await wait_for(recorded, timeout=10, what="unattachable orphan recorded as owner_lost")
    assert len(fleet.fake.requests_for(refused, "hangup")) == 1
    for call_id in calls:
        await fleet.fake.caller_hangs_up(call_id)
    await fleet.wait_idle()
    for call_id in calls:
        assert not fleet.fake.hangup_observed(call_id)
        assert len(fleet.fake.requests_for(call_id, "accept")) == 1


async def test_redis_outage_keeps_calls_and_recovers(
    fake: FakeOpenAI, redis_url: str, tmp_path: Path
) -> None:
    proxy = TcpProxy.to(redis_url)
    await proxy.start()
    db = redis_url.rsplit("/", 1)[-1]
    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    fleet = Fleet(fake, redis_url, prefix, tmp_path)
    try:
        await fleet.start(2, redis_url=f"redis://127.0.0.1:{proxy.port}/{db}")
        a, b = fleet.instances
        live = await fleet.place_call(a)
        connection = await fleet.fake.wait_connected(live)

        await proxy.stop()  # Redis "dies"
        await asyncio.gather(*(fleet.wait_ready(i, 503, within=5) for i in fleet.instances))
        body = (await fleet.http.get(a.url + "/readyz")).json()
        assert any("redis" in reason for reason in body["reasons"]), body
        call_id, response = await fleet.fake.send_incoming_call(
            b.webhook_url, TEST_WEBHOOK_SECRET, client=fleet.http
        )
        assert response.status_code == 503  # not claimed: OpenAI redelivers later
        assert accepts(fleet.fake, call_id) == 0
        await asyncio.sleep(LEASE_S * 1.5)
        assert not connection.closed.is_set()  # the call in progress carries on

        await proxy.start()  # Redis is back
        await asyncio.gather(*(fleet.wait_ready(i, 200, within=5) for i in fleet.instances))
        after = await fleet.place_call(b)
        await asyncio.sleep(LEASE_S * 1.5)  # survivors must not mistake the outage for death
        assert not connection.closed.is_set()
        assert not fleet.fake.hangup_observed(live)
        response = await fleet.admin(b, "POST", f"/admin/calls/{live}/hangup")
        assert response.status_code == 200, response.text
        await wait_for(lambda: fleet.fake.hangup_observed(live), what="routed hangup")
        assert not fleet.fake.hangup_observed(after)
    finally:
        await fleet.aclose()
        await proxy.stop()
        await delete_prefix(redis_url, prefix)
