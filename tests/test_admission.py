"""Admission control under a burst: a limit of 100 accepts exactly 100 of 300 calls."""

from __future__ import annotations

import asyncio

import httpx

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET
from tests.e2e import wait_for


async def test_burst_of_300_against_a_limit_of_100(
    start_callserver, fake_openai: FakeOpenAI
) -> None:
    server = await start_callserver(max_concurrent_calls=100, ring_deadline_s=20)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        results = await asyncio.gather(
            *(
                fake_openai.send_incoming_call(
                    server.webhook_url, TEST_WEBHOOK_SECRET, client=client
                )
                for _ in range(300)
            )
        )
    assert all(response.status_code == 200 for _, response in results)
    call_ids = [call_id for call_id, _ in results]

    def settled() -> bool:
        return all(
            fake_openai.requests_for(c, "accept") or fake_openai.requests_for(c, "reject")
            for c in call_ids
        )

    await wait_for(settled, timeout=30, what="every call accepted or rejected")
    accepted = [c for c in call_ids if fake_openai.requests_for(c, "accept")]
    rejected = [c for c in call_ids if fake_openai.requests_for(c, "reject")]
    assert len(accepted) == 100
    assert len(rejected) == 200
    assert all(
        r.json == {"status_code": 486}
        for c in rejected
        for r in fake_openai.requests_for(c, "reject")
    )
    metrics = server.services.metrics.exposition()[0].decode()
    assert 'callserver_admission_rejected_total{reason="capacity"} 200.0' in metrics
