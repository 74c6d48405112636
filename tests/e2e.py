"""Helpers for end-to-end tests: place a call the way OpenAI does and wait on its outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from callserver.calls.records import CallRecord
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, RunningServer


async def place_call(server: RunningServer, fake: FakeOpenAI, **kwargs: Any) -> tuple[str, Any]:
    """Ring a call at the fake and deliver its signed webhook to callserver."""
    return await fake.send_incoming_call(server.webhook_url, TEST_WEBHOOK_SECRET, **kwargs)


async def wait_for(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def ended_record(server: RunningServer, call_id: str, timeout: float = 5.0) -> CallRecord:
    """The call's record once it is ENDED."""
    registry = server.services.manager.registry

    async def done() -> bool:
        record = await registry.get(call_id)
        return record is not None and record.state.value == "ended"

    await wait_for(done, timeout, f"call {call_id} to end")
    record = await registry.get(call_id)
    assert record is not None
    return record


async def assert_idle(server: RunningServer, timeout: float = 2.0) -> None:
    """No live call, no task owned by the manager."""
    manager = server.services.manager
    await wait_for(lambda: not manager.task_names(), timeout, "manager tasks to finish")
    assert await manager.registry.live_calls() == []


async def place_live_call(
    server: RunningServer, fake: FakeOpenAI, **kwargs: Any
) -> tuple[str, Any]:
    """Ring a GPT-Live session at the fake and deliver its signed live.transport.incoming."""
    return await fake.send_live_incoming(server.webhook_url, TEST_WEBHOOK_SECRET, **kwargs)
