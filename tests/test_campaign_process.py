"""Campaigns on real processes: ``kill -9`` mid-campaign and a restart (SQLite), and two
instances sharing one campaign in Redis when one of them is killed. In every case: no number
dialed twice, and the rows that were being dialed when a process died end ``unknown``."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx

from callserver.outbound.campaigns.store import INTERRUPTED
from callserver.testing.fake_live_outbound import Callee
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve, wait_ready
from tests.conftest import ROOT
from tests.e2e import wait_for
from tests.outbound_support import ADMIN_TOKEN, AUTH, OUTBOUND_CONFIG, TRUNK
from tests.redis_support import delete_prefix

ROWS = 24


def env_for(fake: FakeOpenAI, key: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
    env.update(
        OPENAI_API_KEY=key,
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        CALLSERVER_CONFIG=str(OUTBOUND_CONFIG),
        CALLSERVER_DRAIN_TIMEOUT="1",
        CALLSERVER_ADMIN_TOKEN=ADMIN_TOKEN,
        CALLSERVER_SIP_TRUNK_URL=TRUNK["sip_trunk_url"],
        CALLSERVER_SIP_TRUNK_USERNAME=TRUNK["sip_trunk_username"],
        CALLSERVER_SIP_TRUNK_PASSWORD=TRUNK["sip_trunk_password"],
        CALLSERVER_CALLER_NUMBER=TRUNK["caller_number"],
        CALLSERVER_CAMPAIGN_POLL="0.1",
    )
    env.update(extra)
    return env


class Proc:
    def __init__(self, port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log
        self.url = f"http://127.0.0.1:{port}"


async def start(env: dict[str, str], log: Path) -> Proc:
    port = free_port()
    with log.open("ab") as out:
        proc = await start_serve(env, port, cwd=ROOT, output=out)
    await wait_ready(port, process=proc)
    return Proc(port, proc, log)


async def kill(proc: Proc) -> None:
    if proc.proc.returncode is None:
        proc.proc.send_signal(signal.SIGKILL)
        await proc.proc.wait()


def campaign(rows: int, cpm: int, concurrent: int, start: int) -> dict[str, Any]:
    return {
        "graph": "survey",
        "rows": [{"to": f"+1415556{start + n:04d}"} for n in range(rows)],
        "calls_per_minute": cpm,
        "max_concurrent": concurrent,
        "retry": {"busy": {"max_attempts": 3, "backoff": 0}},
    }


async def until_done(client: httpx.AsyncClient, url: str, campaign_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal found
        try:
            found = (await client.get(f"{url}/admin/campaigns/{campaign_id}", headers=AUTH)).json()
        except httpx.HTTPError:
            return False
        return found.get("state") == "completed"

    await wait_for(done, timeout=30, what=f"campaign done (last: {found})")
    return found


def dials(fake: FakeOpenAI) -> collections.Counter[str]:
    return collections.Counter(c.destination for c in fake.live.outbound.creates if c.placed)


async def test_kill_9_and_restart_never_dials_twice(fake_openai: FakeOpenAI, tmp_path) -> None:
    fake_openai.live.outbound.default = Callee(ring_s=0.05, hangs_up_after=0.4)
    env = env_for(
        fake_openai, "sk-test-campaign", CALLSERVER_CAMPAIGN_DB=str(tmp_path / "c.sqlite3")
    )
    log = tmp_path / "serve.log"
    first = await start(env, log)
    second: Proc | None = None
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.post(
                f"{first.url}/admin/campaigns", json=campaign(ROWS, 900, 4, 0), headers=AUTH
            )
            assert created.status_code == 201, created.text
            campaign_id = created.json()["id"]
            await wait_for(lambda: len(fake_openai.live.outbound.creates) >= 8, timeout=10)
            await kill(first)  # mid-campaign, calls in flight
            before = dials(fake_openai)
            second = await start(env, log)
            info = await until_done(client, second.url, campaign_id)
            rows = [
                __import__("json").loads(line)
                for line in (
                    await client.get(
                        f"{second.url}/admin/campaigns/{campaign_id}/results", headers=AUTH
                    )
                ).text.splitlines()
            ]
        counts = dials(fake_openai)
        assert max(counts.values()) == 1, counts  # no number dialed twice
        interrupted = [r for r in rows if r["outcome"] == "unknown"]
        assert interrupted and all(r["calls"][-1]["error"] == INTERRUPTED for r in interrupted)
        for row in interrupted:  # dialed once before the kill, never after it
            assert counts[row["to"]] <= 1 and (row["to"] in before or counts[row["to"]] == 0)
        assert info["outcomes"].get("completed", 0) + len(interrupted) == ROWS
        assert sum(counts.values()) <= ROWS
        text = log.read_text()
        assert TRUNK["sip_trunk_password"] not in text and "sk-test-campaign" not in text
    finally:
        await kill(first)
        if second is not None:
            await kill(second)


async def test_two_instances_share_a_campaign_and_survive_a_kill(
    fake_openai: FakeOpenAI, redis_url: str, tmp_path
) -> None:
    fake_openai.live.outbound.default = Callee(ring_s=0.05, hangs_up_after=0.4)
    prefix = f"cstest:{uuid.uuid4().hex[:12]}:"
    shared = {
        "REDIS_URL": redis_url,
        "CALLSERVER_REDIS_PREFIX": prefix,
        "CALLSERVER_REDIS_LEASE": "1",
    }
    procs: list[Proc] = []
    try:
        procs = list(
            await asyncio.gather(
                start(
                    env_for(fake_openai, "sk-instance-a", CALLSERVER_INSTANCE_ID="a", **shared),
                    tmp_path / "a.log",
                ),
                start(
                    env_for(fake_openai, "sk-instance-b", CALLSERVER_INSTANCE_ID="b", **shared),
                    tmp_path / "b.log",
                ),
            )
        )
        a, b = procs
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.post(
                f"{a.url}/admin/campaigns", json=campaign(30, 1200, 4, 5000), headers=AUTH
            )
            assert created.status_code == 201, created.text
            campaign_id = created.json()["id"]

            def by_instance() -> collections.Counter[str]:
                return collections.Counter(
                    fake_openai.requests[i].headers.get("authorization", "")[-1]
                    for i in range(len(fake_openai.requests))
                    if fake_openai.requests[i].action == "create"
                )

            await wait_for(lambda: by_instance()["a"] >= 3 and by_instance()["b"] >= 3, timeout=10)
            await kill(a)
            info = await until_done(client, b.url, campaign_id)
        counts = dials(fake_openai)
        assert max(counts.values()) == 1, counts  # one campaign, two instances, no double dial
        assert info["outcomes"].get("completed", 0) + info["outcomes"].get("unknown", 0) == 30
        assert by_instance()["b"] > by_instance()["a"] > 0
        for name in ("a.log", "b.log"):  # secrets stay out of the logs
            assert TRUNK["sip_trunk_password"] not in (tmp_path / name).read_text()
    finally:
        for proc in procs:
            await kill(proc)
        await delete_prefix(redis_url, prefix)
