"""RedisRegistry against the real Redis: atomic claims, the global cap, leases, shared records,
and behaviour while Redis is unreachable."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from callserver.calls.coordination import Coordinator
from callserver.calls.records import CallRecord, CallState
from callserver.calls.redis_registry import RedisRegistry
from callserver.calls.registry import InMemoryRegistry, RegistryUnavailable
from callserver.calls.registry_factory import make_registry
from callserver.settings import Settings
from tests.redis_support import TcpProxy, client_for

MakeRegistry = Callable[..., RedisRegistry]


@pytest.fixture
async def make_reg(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeRegistry]:
    """Factory of registries, each with its own client (like separate instances)."""
    made: list[RedisRegistry] = []

    def make(instance_id: str = "a", *, url: str = redis_url, **kwargs: Any) -> RedisRegistry:
        options: dict[str, Any] = {"max_calls": 10, "dedupe_ttl_s": 60.0, "lease_s": 5.0}
        options.update(kwargs)
        registry = RedisRegistry(
            client_for(url), instance_id=instance_id, key_prefix=redis_prefix, **options
        )
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_thirty_concurrent_claims_across_instances_one_wins(make_reg: MakeRegistry) -> None:
    registries = [make_reg(f"i{n}") for n in range(5)]
    calls = [registries[n % 5].claim_call("rtc_same") for n in range(30)]
    deliveries = [registries[n % 5].claim_delivery("wh_same") for n in range(30)]
    call_wins = await asyncio.gather(*calls)
    delivery_wins = await asyncio.gather(*deliveries)
    assert call_wins.count(True) == 1
    assert delivery_wins.count(True) == 1
    assert await registries[0].claim_call("rtc_other") is True


async def test_global_and_graph_caps_hold_under_a_burst(make_reg: MakeRegistry) -> None:
    registries = [make_reg(f"i{n}", max_calls=5) for n in range(3)]
    results = await asyncio.gather(
        *(registries[n % 3].acquire_slot(f"c{n}", "main", None) for n in range(30))
    )
    assert results.count(True) == 5
    assert await registries[0].acquire_slot("late", "main", None) is False

    # release one: exactly one of the waiting instances gets it
    winner = next(n for n, ok in enumerate(results) if ok)
    await registries[winner % 3].release_slot(f"c{winner}")
    await registries[winner % 3].release_slot(f"c{winner}")  # idempotent
    again = await asyncio.gather(
        *(r.acquire_slot(f"x{n}", "main", None) for n, r in enumerate(registries))
    )
    assert again.count(True) == 1


async def test_instance_cap_under_a_burst_and_fleet_cap_across(make_reg: MakeRegistry) -> None:
    """Each instance's own cap holds against concurrent acquires; the fleet cap (None here
    for one of them) is counted in Redis."""
    a = make_reg("a", max_calls=5, instance_max_calls=2)
    b = make_reg("b", max_calls=5, instance_max_calls=None)
    on_a = await asyncio.gather(*(a.acquire_slot(f"a{n}", "main", None) for n in range(10)))
    assert on_a.count(True) == 2 and a.slots_in_use() == 2
    on_b = await asyncio.gather(*(b.acquire_slot(f"b{n}", "main", None) for n in range(10)))
    assert on_b.count(True) == 3  # the fleet's 5, less a's 2
    unbounded = make_reg("c", max_calls=None, instance_max_calls=1)
    assert await unbounded.acquire_slot("c0", "main", None) is True
    assert await unbounded.acquire_slot("c1", "main", None) is False


async def test_per_graph_cap(make_reg: MakeRegistry) -> None:
    registries = [make_reg(f"i{n}", max_calls=50) for n in range(3)]
    results = await asyncio.gather(
        *(registries[n % 3].acquire_slot(f"s{n}", "sales", 2) for n in range(12))
    )
    assert results.count(True) == 2
    assert await registries[0].acquire_slot("o1", "support", 2) is True
    assert await registries[0].acquire_slot("s0", "sales", 2) is results[0]  # re-acquire is ok


async def test_expired_leases_free_their_slots(make_reg: MakeRegistry) -> None:
    dead = make_reg("dead", max_calls=2, lease_s=0.4)
    alive = make_reg("alive", max_calls=2, lease_s=0.4)
    for call_id in ("d1", "d2"):
        await dead.put(CallRecord(call_id=call_id))
        assert await dead.acquire_slot(call_id, "main", None)
    assert await alive.acquire_slot("a1", "main", None) is False
    await asyncio.sleep(0.5)  # "dead" never renews
    assert await alive.acquire_slot("a1", "main", None) is True

    # a renewing owner keeps its slots past the lease
    await alive.put(CallRecord(call_id="a1"))
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await alive.renew_leases() == []
    assert await dead.acquire_slot("d3", "main", None) is True
    assert await dead.acquire_slot("d4", "main", None) is False


async def test_records_are_shared_and_read_only_elsewhere(make_reg: MakeRegistry) -> None:
    a, b = make_reg("a"), make_reg("b")
    record = CallRecord(call_id="rtc_1", caller="+15551234", twilio_call_sid="CA1")
    record.graph = "frontdesk"
    await a.put(record)
    await a.link_call_sid("CA1", "rtc_1")
    record.transition(CallState.ACCEPTING)
    record.transition(CallState.ACTIVE)
    record.visit("greeter")
    await a.renew_leases()  # the owner's renewal publishes its state

    assert await a.get("rtc_1") is record
    assert a.is_local("rtc_1") and not b.is_local("rtc_1")
    assert await b.owner_of("rtc_1") == "a"
    assert await a.owner_of("rtc_1") == "a"
    snapshots = await b.live_calls()
    assert [s.call_id for s in snapshots] == ["rtc_1"]
    snap = snapshots[0]
    assert snap is not record
    assert (snap.state, snap.graph, snap.caller, snap.current_agent) == (
        CallState.ACTIVE,
        "frontdesk",
        "+15551234",
        "greeter",
    )
    assert snap.summary()["duration_s"] >= 0
    by_sid = await b.by_call_sid("CA1")
    assert by_sid is not None and by_sid.call_id == "rtc_1"

    record.transition(CallState.ENDING)
    record.end_reason = "caller_hangup"
    record.transition(CallState.ENDED)
    await a.finished(record)
    assert await b.live_calls() == []
    ended = await b.get("rtc_1")
    assert ended is not None and ended.state is CallState.ENDED
    assert ended.end_reason == "caller_hangup"
    assert await b.by_call_sid("CA1") is None
    assert await b.owner_of("rtc_1") is None
    # a late write never resurrects an ended call
    await a.put(record)
    assert [r.call_id for r in await b.live_calls()] == []


async def test_unreachable_redis_raises_clearly_and_keeps_own_calls(make_reg: MakeRegistry) -> None:
    reg = make_reg("a", url=f"redis://127.0.0.1:{closed_port()}/0", op_timeout_s=0.5)
    with pytest.raises(RegistryUnavailable, match="redis claim call"):
        await reg.claim_call("rtc_1")
    with pytest.raises(RegistryUnavailable):
        await reg.acquire_slot("rtc_1", "main", None)
    ok, detail = await reg.healthy()
    assert not ok and "redis unreachable" in detail
    # writes about our own calls never raise; reads of them stay local
    record = CallRecord(call_id="rtc_1")
    await reg.put(record)
    await reg.link_call_sid("CA1", "rtc_1")
    assert await reg.get("rtc_1") is record
    assert await reg.by_call_sid("CA1") is record
    await reg.release_slot("rtc_1")
    record.transition(CallState.ENDING)
    record.transition(CallState.ENDED)
    await reg.finished(record)
    assert await reg.get("rtc_1") is record


async def test_local_fallback_decides_in_process(make_reg: MakeRegistry) -> None:
    reg = make_reg("a", url=f"redis://127.0.0.1:{closed_port()}/0", local_fallback=True)
    assert await reg.claim_call("rtc_1") is True
    assert await reg.claim_call("rtc_1") is False
    assert await reg.acquire_slot("rtc_1", "main", None) is True


async def test_recovers_when_redis_returns_and_resyncs(
    make_reg: MakeRegistry, redis_url: str
) -> None:
    proxy = TcpProxy.to(redis_url)
    await proxy.start()
    db = redis_url.rsplit("/", 1)[-1]
    a = make_reg("a", url=f"redis://127.0.0.1:{proxy.port}/{db}", op_timeout_s=0.5)
    b = make_reg("b")
    try:
        done = CallRecord(call_id="rtc_done")
        await a.put(done)
        assert await a.acquire_slot("rtc_done", "main", None)
        await proxy.stop()  # Redis "dies"
        with pytest.raises(RegistryUnavailable):
            await a.claim_call("rtc_new")
        with pytest.raises(RegistryUnavailable):
            await a.renew_leases()
        live = CallRecord(call_id="rtc_live")
        await a.put(live)  # a call accepted during the outage (local fallback)
        await a.release_slot("rtc_done")
        done.transition(CallState.ENDING)
        done.transition(CallState.ENDED)
        await a.finished(done)

        await proxy.start()  # Redis is back on the same address
        assert (await a.healthy())[0]
        assert await a.claim_call("rtc_new") is True
        assert await a.renew_leases() == []  # flushes the deferred writes
        assert [r.call_id for r in await b.live_calls()] == ["rtc_live"]
        ended = await b.get("rtc_done")
        assert ended is not None and ended.state is CallState.ENDED
        assert await b.acquire_slot("x", "main", None)  # the deferred release landed
    finally:
        await proxy.stop()


async def test_coordinator_survives_redis_outage(make_reg: MakeRegistry, redis_url: str) -> None:
    proxy = TcpProxy.to(redis_url)
    await proxy.start()
    db = redis_url.rsplit("/", 1)[-1]
    a = make_reg("a", url=f"redis://127.0.0.1:{proxy.port}/{db}", op_timeout_s=0.3, lease_s=0.6)

    async def nothing(*args: object) -> None:
        return None

    coordinator = Coordinator(a, on_end_request=nothing, on_orphan=nothing)
    await coordinator.start()
    tasks = list(coordinator._tasks)
    try:
        await asyncio.wait_for(coordinator.subscribed.wait(), 2)
        assert await coordinator.renew_once()
        await proxy.stop()
        assert not await coordinator.renew_once()
        assert not coordinator.sweep_ready()
        await asyncio.sleep(0.3)
        assert not coordinator.subscribed.is_set()
        await proxy.start()
        assert await coordinator.renew_once()
        assert not coordinator.sweep_ready()  # waits a full lease before judging others
        await asyncio.wait_for(coordinator.subscribed.wait(), 5)
        await asyncio.sleep(0.7)
        assert coordinator.sweep_ready()
    finally:
        await coordinator.aclose()
        await proxy.stop()
    assert tasks and all(task.done() for task in tasks)


async def test_factory_picks_the_registry_from_settings() -> None:
    registry, coordinator = make_registry(Settings())
    assert isinstance(registry, InMemoryRegistry) and coordinator is None
    settings = Settings(redis_url="redis://127.0.0.1:6379/15", instance_id="box-1")
    registry, coordinator = make_registry(settings, lease_s=2.0)
    assert isinstance(registry, RedisRegistry) and isinstance(coordinator, Coordinator)
    assert registry.instance_id == "box-1" and registry.lease_s == 2.0
    await registry.aclose()
