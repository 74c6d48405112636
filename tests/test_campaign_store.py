"""The campaign stores (SQLite, Redis): one behaviour, tested once on both.

What the runner's "never dialed twice" rests on: a claim is atomic with the campaign's
limits (state, max_concurrent, pace) and the row's state; a lost runner's claims become
``unknown``, never pending again; retries follow known, retryable outcomes only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator

import pytest

from callserver.outbound.campaigns import redis_scripts
from callserver.outbound.campaigns.attempt import INTERRUPTED as ATTEMPT_INTERRUPTED
from callserver.outbound.campaigns.attempt import AttemptResult, interrupted
from callserver.outbound.campaigns.records import initial_row, row_state
from callserver.outbound.campaigns.redis_store import RedisCampaignStore
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.sqlite_store import SqliteCampaignStore
from callserver.outbound.campaigns.store import INTERRUPTED, CampaignStore, TransitionError
from callserver.outbound.campaigns.transitions import allowed_from, check_transition
from tests.redis_support import TEST_REDIS_URL, client_for, delete_prefix, require_redis

SPEC = CampaignSpec(graph="reminders", calls_per_minute=600, max_concurrent=2)
ROWS = [
    RowSpec(1, "+14155550001", {"name": "A"}),
    RowSpec(2, "+14155550002", {"name": "B"}, "Europe/Paris"),
    RowSpec(3, "+14155550003", {}),
    RowSpec(4, "+14155550004", {}, skip="dnc"),
]
NOW = 1_800_000_000.0


def ended(
    owner: str, outcome: str, call_id: str | None, retry_at: float | None = None
) -> AttemptResult:
    """Row 1's first attempt of ``cmp_1`` ended at ``NOW``."""
    return AttemptResult(
        campaign_id="cmp_1",
        row=1,
        owner=owner,
        attempt=1,
        outcome=outcome,
        now=NOW,
        call_id=call_id,
        retry_at=retry_at,
    )


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path) -> AsyncIterator[CampaignStore]:
    if request.param == "sqlite":
        sqlite = SqliteCampaignStore(tmp_path / "campaigns.sqlite3")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
        return
    require_redis(TEST_REDIS_URL)
    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    client = client_for(TEST_REDIS_URL)
    redis = RedisCampaignStore(client, prefix)
    await redis.open()
    yield redis
    await client.aclose()
    await delete_prefix(TEST_REDIS_URL, prefix)


async def test_create_and_progress(store: CampaignStore) -> None:
    info = await store.create("cmp_1", SPEC, ROWS, NOW)
    assert info.state == "running" and info.total == 4
    assert info.counts == {"pending": 3, "skipped": 1} and info.outcomes == {"dnc": 1}
    assert await store.running() == ["cmp_1"]
    row, _next_at = await store.due("cmp_1", NOW)
    assert row is not None and row.row == 1 and row.variables == {"name": "A"}
    assert (await store.get("cmp_1")).spec == SPEC


async def test_claim_is_exclusive_and_paced(store: CampaignStore) -> None:
    await store.create("cmp_1", SPEC, ROWS, NOW)
    first = await store.claim("cmp_1", 1, NOW, "a")
    assert first.result == "ok" and first.attempt == 1
    assert (await store.claim("cmp_1", 1, NOW, "b")).result == "taken"
    # 600/min = one dial per 100 ms, on the store's clock (Redis: the server's)
    paced = await store.claim("cmp_1", 2, NOW, "b")
    assert paced.result == "pace" and 0 < paced.wait_s <= 0.1
    await asyncio.sleep(paced.wait_s + 0.01)
    import time

    later = NOW + 0.2 if isinstance(store, SqliteCampaignStore) else time.time()
    assert (await store.claim("cmp_1", 2, max(later, NOW), "b")).result == "ok"
    await asyncio.sleep(0.11)
    later = NOW + 0.4 if isinstance(store, SqliteCampaignStore) else time.time()
    assert (await store.claim("cmp_1", 3, max(later, NOW), "b")).result == "busy"  # 2 in flight
    info = await store.get("cmp_1")
    assert info.in_flight == 2 and info.dials == 2 and info.counts["dialing"] == 2


async def test_finish_retry_and_done(store: CampaignStore) -> None:
    await store.create("cmp_1", SPEC, ROWS, NOW)
    await store.claim("cmp_1", 1, NOW, "a")
    await store.attach_call("cmp_1", 1, "a", "out_1")
    assert (await store.rows("cmp_1"))[0].call_id == "out_1"
    await store.finish(ended("a", "busy", "out_1", retry_at=NOW + 60))
    row = (await store.rows("cmp_1"))[0]
    assert row.status == "pending" and row.attempts == 1 and row.next_at == NOW + 60
    assert row.calls == [
        {"attempt": 1, "call_id": "out_1", "outcome": "busy", "at": NOW, "error": None}
    ]
    assert (await store.claim("cmp_1", 1, NOW + 1, "a")).result == "not_due"
    # a finish for an attempt that is not the row's current one changes nothing
    await store.finish(ended("a", "completed", "out_x"))
    assert (await store.rows("cmp_1"))[0].status == "pending"
    info = await store.get("cmp_1")
    assert info.in_flight == 0 and info.counts["pending"] == 3


async def test_unclaim_skip_defer(store: CampaignStore) -> None:
    await store.create("cmp_1", SPEC, ROWS, NOW)
    await store.claim("cmp_1", 1, NOW, "a")
    await store.unclaim("cmp_1", 1, "a")
    row = (await store.rows("cmp_1"))[0]
    assert row.status == "pending" and row.attempts == 0
    assert (await store.get("cmp_1")).in_flight == 0
    await store.skip("cmp_1", 1, "dnc")
    await store.defer("cmp_1", 2, NOW + 3600)
    row, _next_at = await store.due("cmp_1", NOW)
    assert row is not None and row.row == 3
    rows = await store.rows("cmp_1")
    assert rows[0].status == "skipped" and rows[0].outcome == "dnc"
    assert rows[1].next_at == NOW + 3600
    info = await store.get("cmp_1")
    assert info.outcomes == {"dnc": 2} and info.counts["skipped"] == 2


async def test_states(store: CampaignStore) -> None:
    await store.create("cmp_1", SPEC, ROWS, NOW)
    assert (await store.set_state("cmp_1", "paused")).state == "paused"
    assert (await store.claim("cmp_1", 1, NOW, "a")).result == "stopped"
    assert await store.running() == []
    assert (await store.set_state("cmp_1", "running")).state == "running"
    await store.claim("cmp_1", 1, NOW, "a")
    info = await store.set_state("cmp_1", "cancelled", "operator")
    assert info.state == "cancelled" and info.reason == "operator"
    assert info.counts["cancelled"] == 2 and info.counts["dialing"] == 1
    with pytest.raises(TransitionError):
        await store.set_state("cmp_1", "running")
    # the attempt in flight finishes; a retry is not scheduled any more
    await store.finish(ended("a", "busy", "out_1", retry_at=NOW + 60))
    assert (await store.rows("cmp_1"))[0].status == "done"
    assert await store.set_state("nope", "paused") is None


async def test_completion(store: CampaignStore) -> None:
    rows = [RowSpec(1, "+14155550001", {})]
    await store.create("cmp_1", SPEC, rows, NOW)
    await store.claim("cmp_1", 1, NOW, "a")
    assert not await store.complete_if_done("cmp_1")
    await store.finish(ended("a", "completed", "out_1"))
    assert await store.complete_if_done("cmp_1")
    info = await store.get("cmp_1")
    assert info.state == "completed" and info.outcomes == {"completed": 1}


async def test_lost_runner_rows_become_unknown(store: CampaignStore) -> None:
    """A claim whose runner is gone is never dialed again: its outcome is unknown."""
    await store.create("cmp_1", SPEC, ROWS, NOW)
    await store.heartbeat("dead", 0.05)
    await store.heartbeat("alive", 30)
    await store.claim("cmp_1", 1, NOW, "dead")
    await asyncio.sleep(0.2)  # the dead runner's heartbeat lapses (Redis); the pace allows one more
    assert (await store.claim("cmp_1", 2, NOW + 0.2, "alive")).result == "ok"
    recovered = await store.recover("alive", NOW + 5)
    assert recovered == 1
    rows = await store.rows("cmp_1")
    assert rows[1].status == "dialing" and rows[1].owner == "alive"  # a live runner's: kept
    assert rows[0].status == "done" and rows[0].outcome == "unknown"
    assert rows[0].calls[-1]["error"] == INTERRUPTED
    info = await store.get("cmp_1")
    assert info.outcomes.get("unknown") == 1
    # the dead runner's late finish changes nothing
    await store.finish(ended("dead", "busy", None, retry_at=NOW + 60))
    assert (await store.rows("cmp_1"))[0].outcome == "unknown"


def test_the_pace_keeps_its_grid() -> None:
    """A runner that wakes late stays on the grid (the rate holds) without going above twice
    the pace; after two idle seconds it starts afresh (no burst)."""
    from callserver.outbound.campaigns.store import next_pace_slot, pace_wait

    interval = 0.1
    slot, last, dials = 0.0, -1.0, []
    now = 10.0
    while len(dials) < 50:
        wait = pace_wait(slot, last, now, interval)
        if wait > 0:
            now += wait
            continue
        dials.append(now)
        slot, last = next_pace_slot(slot, now, interval), now
        now += 0.3 if len(dials) % 10 == 0 else 0.01  # every tenth dial, the runner stalls
    gaps = [b - a for a, b in itertools.pairwise(dials)]
    assert min(gaps) >= interval / 2 - 1e-9  # never above twice the pace
    assert 49 / (dials[-1] - dials[0]) == pytest.approx(1 / interval, rel=0.05)  # the pace holds
    assert next_pace_slot(5.0, 10.0, interval) == pytest.approx(10.1)  # idle: afresh


def test_attempt_result_is_one_frozen_keyword_only_value() -> None:
    """``finish`` takes one value whose fields are named at every call site."""
    result = ended("a", "busy", "out_1", retry_at=NOW + 60)
    with pytest.raises(TypeError):
        AttemptResult("cmp_1", 1, "a", 1, "busy", NOW)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = "completed"  # type: ignore[misc]
    assert result.retried("running") and result.retried("paused")
    assert not result.retried("cancelled") and not result.retried("completed")
    assert not ended("a", "completed", "out_1").retried("running")
    assert result.entry() == {
        "attempt": 1,
        "call_id": "out_1",
        "outcome": "busy",
        "at": NOW,
        "error": None,
    }


def test_recovered_attempts_are_unknown_and_final() -> None:
    ended = interrupted("cmp_1", 1, "dead", 2, "out_1", NOW)
    assert ended.outcome == "unknown" and ended.detail == INTERRUPTED == ATTEMPT_INTERRUPTED
    assert not ended.retried("running")
    assert ended.entry()["call_id"] == "out_1" and ended.entry()["attempt"] == 2


def test_transitions_are_checked_one_way_for_both_stores() -> None:
    check_transition("running", "paused")
    check_transition("paused", "paused")  # staying is no error
    with pytest.raises(TransitionError, match="campaign is cancelled: it cannot become running"):
        check_transition("cancelled", "running")
    assert allowed_from("running") == "paused"
    assert allowed_from("cancelled").split() == ["running", "paused"]
    assert allowed_from("completed") == "running"


def test_rows_start_and_read_back_alike() -> None:
    pending = initial_row(ROWS[1], NOW)
    assert pending["status"] == "pending" and pending["next_at"] == NOW
    assert pending["outcome"] is None and pending["variables"] == {"name": "B"}
    skipped = initial_row(ROWS[3], NOW)
    assert skipped["status"] == "skipped" and skipped["next_at"] is None
    assert skipped["outcome"] == "dnc"
    row = row_state(pending)
    assert (row.row, row.to, row.timezone, row.attempts) == (2, "+14155550002", "Europe/Paris", 0)
    assert row.calls == [] and row.owner is None and row.call_id is None


def test_redis_scripts_take_the_shared_constants() -> None:
    """The Lua copies of the pace's catch-up bound and the retry states come from Python."""
    assert "math.max(2 * interval, 2000)" in redis_scripts.CLAIM
    assert "(state == 'paused' or state == 'running')" in redis_scripts.FINISH
    for script in (redis_scripts.CLAIM, redis_scripts.FINISH):
        assert "CATCH_UP_MS" not in script and "RETRY_STATES" not in script
