"""Coordinator against the real Redis: orphan sweep, end routing, lost calls."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from callserver.calls.coordination import Coordinator
from callserver.calls.records import CallRecord, CallState
from callserver.calls.redis_registry import RedisRegistry
from tests.redis_support import client_for

LEASE_S = 0.5


class Recorder:
    """The callbacks a manager would provide; records what the coordinator asked for."""

    def __init__(self, name: str, *, fail_hangups: int = 0) -> None:
        self.name = name
        self.ends: list[tuple[str, str]] = []
        self.hangups: list[str] = []
        self.transfers: list[tuple[str, str, str]] = []
        self._fail = fail_hangups

    async def on_transfer(self, call_id: str, target: str, reason: str) -> None:
        self.transfers.append((call_id, target, reason))

    async def on_end_request(self, call_id: str, reason: str) -> None:
        self.ends.append((call_id, reason))

    async def on_orphan(self, call_id: str) -> None:
        if self._fail > 0:
            self._fail -= 1
            raise RuntimeError("REST hangup failed")
        self.hangups.append(call_id)


class Cluster:
    """Registries and coordinators standing in for instances, all closed at teardown."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.registries: list[RedisRegistry] = []
        self.coordinators: list[Coordinator] = []

    def registry(self, instance_id: str, **kwargs: Any) -> RedisRegistry:
        options: dict[str, Any] = {"max_calls": 10, "dedupe_ttl_s": 60.0, "lease_s": LEASE_S}
        options.update(kwargs)
        registry = RedisRegistry(
            client_for(self.url), instance_id=instance_id, key_prefix=self.prefix, **options
        )
        self.registries.append(registry)
        return registry

    async def instance(
        self, instance_id: str, recorder: Recorder, **kwargs: Any
    ) -> tuple[RedisRegistry, Coordinator]:
        registry = self.registry(instance_id)
        coordinator = Coordinator(
            registry,
            on_end_request=recorder.on_end_request,
            on_orphan=recorder.on_orphan,
            on_transfer=recorder.on_transfer,
            sweep_interval_s=0.1,
            **kwargs,
        )
        self.coordinators.append(coordinator)
        await coordinator.start()
        await asyncio.wait_for(coordinator.subscribed.wait(), 2)
        return registry, coordinator

    async def aclose(self) -> None:
        for coordinator in self.coordinators:
            await coordinator.aclose()
        for registry in self.registries:
            await registry.aclose()


@pytest.fixture
async def cluster(redis_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    c = Cluster(redis_url, redis_prefix)
    yield c
    await c.aclose()


async def eventually(predicate: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def start_calls(registry: RedisRegistry, ids: list[str]) -> list[CallRecord]:
    records = []
    for call_id in ids:
        record = CallRecord(call_id=call_id, twilio_call_sid=f"CA-{call_id}")
        record.graph = "main"
        await registry.put(record)
        await registry.link_call_sid(record.twilio_call_sid or "", call_id)
        assert await registry.acquire_slot(call_id, "main", None)
        record.transition(CallState.ACCEPTING)
        record.transition(CallState.ACTIVE)
        records.append(record)
    return records


async def test_orphans_are_hung_up_once_by_two_sweepers(cluster: Cluster) -> None:
    dead = cluster.registry("dead", max_calls=3)  # no coordinator: it "was kill -9'd"
    orphans = ["rtc_o1", "rtc_o2", "rtc_o3"]
    await start_calls(dead, orphans)
    b, c = Recorder("b"), Recorder("c")
    reg_b, _ = await cluster.instance("b", b)
    await cluster.instance("c", c)
    started = time.monotonic()

    await eventually(lambda: len(b.hangups) + len(c.hangups) >= 3)
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.3)  # more sweeps must not hang up again
    counts = collections.Counter(b.hangups + c.hangups)
    assert counts == dict.fromkeys(orphans, 1)
    # bound: lease expiry + the sweeper's own one-lease grace + a sweep interval
    assert elapsed < 2 * LEASE_S + 0.6

    for call_id in orphans:
        record = await reg_b.get(call_id)
        assert record is not None
        assert (record.state, record.end_reason) == (CallState.ENDED, "owner_lost")
    assert await reg_b.live_calls() == []
    assert await reg_b.by_call_sid("CA-rtc_o1") is None
    slots = [await reg_b.acquire_slot(f"n{n}", "main", None) for n in range(10)]
    assert all(slots)  # every orphan slot was freed


async def test_failed_orphan_hangup_is_retried(cluster: Cluster) -> None:
    dead = cluster.registry("dead")
    await start_calls(dead, ["rtc_o"])
    b = Recorder("b", fail_hangups=2)
    reg_b, _ = await cluster.instance("b", b)
    await eventually(lambda: b.hangups == ["rtc_o"])
    record = await reg_b.get("rtc_o")
    assert record is not None and record.end_reason == "owner_lost"


async def test_end_request_is_routed_to_the_owner(cluster: Cluster) -> None:
    a, b = Recorder("a"), Recorder("b")
    reg_a, coord_a = await cluster.instance("a", a)
    _, coord_b = await cluster.instance("b", b)
    await start_calls(reg_a, ["rtc_1"])

    assert await coord_a.request_end("rtc_1", "admin") == "local"
    assert await coord_b.request_end("rtc_1", "twilio_completed") == "routed"
    await eventually(lambda: a.ends == [("rtc_1", "twilio_completed")])
    assert b.ends == [] and a.hangups == b.hangups == []
    assert await coord_b.request_end("rtc_nope", "admin") == "unknown"


async def test_transfer_is_routed_to_the_owner(cluster: Cluster) -> None:
    a, b = Recorder("a"), Recorder("b")
    reg_a, coord_a = await cluster.instance("a", a)
    _, coord_b = await cluster.instance("b", b)
    await start_calls(reg_a, ["rtc_1"])
    dead = cluster.registry("dead")
    await start_calls(dead, ["rtc_2"])

    assert await coord_a.request_transfer("rtc_1", "sip:desk@example.com") == "local"
    assert await coord_b.request_transfer("rtc_1", "sip:desk@example.com", "admin") == "routed"
    await eventually(lambda: a.transfers == [("rtc_1", "sip:desk@example.com", "admin")])
    assert await coord_b.request_transfer("rtc_2", "sip:desk@example.com") == "unreachable"
    assert await coord_b.request_transfer("rtc_nope", "sip:desk@example.com") == "unknown"
    assert b.transfers == [] and a.ends == b.ends == []


async def test_end_request_for_a_dead_owner_hangs_up_here(cluster: Cluster) -> None:
    dead = cluster.registry("dead")
    await start_calls(dead, ["rtc_1"])
    b = Recorder("b")
    reg_b, coord_b = await cluster.instance("b", b)

    # lease still current but nobody subscribed: hang up here, leave the record to the sweep
    assert await coord_b.request_end("rtc_1", "twilio_completed") == "hung_up"
    assert b.hangups == ["rtc_1"]
    await asyncio.sleep(LEASE_S + 0.05)
    # lease expired: this instance takes it over and records it ended
    outcome = await coord_b.request_end("rtc_1", "twilio_completed")
    record = await reg_b.get("rtc_1")
    assert record is not None and record.end_reason == "owner_lost"
    assert outcome in {"hung_up", "unknown"}  # "unknown" if the sweep got there first
    assert await coord_b.request_end("rtc_1", "again") == "unknown"


async def test_owner_learns_it_lost_a_call(cluster: Cluster) -> None:
    stalled = cluster.registry("stalled")
    await start_calls(stalled, ["rtc_1"])
    reg_b = cluster.registry("b")  # a survivor, sweeping by hand
    await asyncio.sleep(LEASE_S + 0.05)
    assert await reg_b.orphans.claim("rtc_1") == 1  # a survivor took it over
    assert await reg_b.orphans.claim("rtc_1") == 0  # ... exactly once
    await reg_b.orphans.finish("rtc_1")
    assert await stalled.renew_leases() == ["rtc_1"]  # the owner wakes up and learns it
    assert await stalled.renew_leases() == []  # reported once
    record = await reg_b.get("rtc_1")
    assert record is not None and record.state is CallState.ENDED  # not resurrected


async def test_start_requires_callbacks(cluster: Cluster) -> None:
    coordinator = Coordinator(cluster.registry("x"))
    with pytest.raises(RuntimeError, match="bind"):
        await coordinator.start()
    recorder = Recorder("x")
    coordinator.bind(on_end_request=recorder.on_end_request, on_orphan=recorder.on_orphan)
    await coordinator.start()
    await coordinator.aclose()
