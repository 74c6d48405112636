"""The post-call outbox: signed, durable, at-least-once delivery to a real local receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from svix.webhooks import Webhook
from werkzeug import Request, Response

from callserver.records.outbox import Outbox

SECRET = "whsec_" + base64.b64encode(b"callserver-test-secret-32-bytes!").decode()
EVENT = {"type": "call.ended", "data": {"call_id": "rtc_1", "end_reason": "caller_hangup"}}
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "idle_poll_s": 0.2}
CHILD = Path(__file__).with_name("outbox_crash_child.py")


class Receiver:
    """A webhook endpoint on the pytest-httpserver that fails its first ``fail_first``
    requests with 500 and records everything it was sent."""

    def __init__(self, httpserver: HTTPServer, path: str = "/hooks", fail_first: int = 0) -> None:
        self.url = httpserver.url_for(path)
        self.fail_first = fail_first
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        httpserver.expect_request(path, method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.get_data(), dict(request.headers)))
            failing = len(self.requests) <= self.fail_first
        return Response("down" if failing else "ok", status=500 if failing else 200)

    def verified(self) -> list[tuple[dict[str, Any], str]]:
        """Every request, signature-checked the way a customer would: (payload, webhook-id)."""
        out = []
        for body, headers in self.requests:
            Webhook(SECRET).verify(body, headers)
            out.append((json.loads(body), headers["Webhook-Id"]))
        return out


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until true; fails after 5 s rather than hanging the suite.

    Polling on purpose: the state lives in SQLite (and in another thread), not in an Event.
    """
    async with asyncio.timeout(5.0):
        while not await check():
            await asyncio.sleep(0.01)


async def drained(outbox: Outbox) -> bool:
    return await outbox.pending_count() == 0


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY id")]
    finally:
        conn.close()


async def test_delivers_signed_event(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver)
    results: list[str] = []
    async with Outbox(
        tmp_path / "o.sqlite3", [receiver.url], SECRET, on_result=results.append, **FAST
    ) as outbox:
        webhook_id = await outbox.enqueue(EVENT)
        await until(lambda: drained(outbox))
    [(payload, got_id)] = receiver.verified()
    assert payload == EVENT
    assert got_id == webhook_id and webhook_id.startswith("msg_")
    assert receiver.requests[0][1]["Content-Type"] == "application/json"
    assert results == ["delivered"]


async def test_enqueue_is_committed_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, ["http://a.invalid/x", "http://b.invalid/y"], SECRET)
    webhook_id = await outbox.enqueue(EVENT)
    stored = rows(path)  # a second connection sees it: committed, not just buffered
    assert [(r["webhook_id"], r["endpoint"]) for r in stored] == [
        (webhook_id, "http://a.invalid/x"),
        (webhook_id, "http://b.invalid/y"),
    ]
    assert all(r["attempts"] == 0 and r["status"] == "pending" for r in stored)
    assert json.loads(stored[0]["body"]) == EVENT
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    # Re-enqueueing the same id is a no-op (idempotent producers).
    assert await outbox.enqueue(EVENT, webhook_id=webhook_id) == webhook_id
    assert await outbox.pending_count() == 2
    await outbox.aclose()


async def test_receiver_failing_then_recovering(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver, fail_first=3)
    results: list[str] = []
    async with Outbox(
        tmp_path / "o.sqlite3", [receiver.url], SECRET, on_result=results.append, **FAST
    ) as outbox:
        webhook_id = await outbox.enqueue(EVENT)
        await until(lambda: drained(outbox))
    seen = receiver.verified()  # every attempt carries a valid signature
    assert len(seen) == 4
    assert {got_id for _, got_id in seen} == {webhook_id}
    assert all(payload == EVENT for payload, _ in seen)
    assert results == ["retry", "retry", "retry", "delivered"]


async def test_one_row_per_endpoint(httpserver: HTTPServer, tmp_path: Path) -> None:
    good = Receiver(httpserver, "/good")
    flaky = Receiver(httpserver, "/flaky", fail_first=2)
    async with Outbox(tmp_path / "o.sqlite3", [good.url, flaky.url], SECRET, **FAST) as outbox:
        webhook_id = await outbox.enqueue(EVENT)
        await until(lambda: drained(outbox))
    assert [got_id for _, got_id in good.verified()] == [webhook_id]
    assert [got_id for _, got_id in flaky.verified()] == [webhook_id] * 3


async def test_restart_delivers_what_a_stopped_outbox_stored(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    receiver = Receiver(httpserver)
    path = tmp_path / "o.sqlite3"
    first = Outbox(path, [receiver.url], SECRET, **FAST)  # never started: the worker is off
    webhook_id = await first.enqueue(EVENT)
    await first.aclose()
    assert receiver.requests == []

    async with Outbox(path, [receiver.url], SECRET, **FAST) as second:
        await until(lambda: drained(second))
    assert [got_id for _, got_id in receiver.verified()] == [webhook_id]


async def test_retry_schedule_survives_restart(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver, fail_first=1)
    path = tmp_path / "o.sqlite3"
    slow = {"backoff_base_s": 1.0, "backoff_max_s": 1.0, "idle_poll_s": 0.2}
    async with Outbox(path, [receiver.url], SECRET, **slow) as first:
        webhook_id = await first.enqueue(EVENT)
        await until(lambda: asyncio.to_thread(lambda: rows(path)[0]["attempts"] == 1))
    [row] = rows(path)
    assert row["next_attempt_at"] > time.time()
    assert row["last_error"] == "HTTP 500"

    async with Outbox(path, [receiver.url], SECRET, **slow) as second:
        await asyncio.sleep(0.2)
        assert len(receiver.requests) == 1  # nothing before the stored next_attempt_at
        await until(lambda: drained(second))
    assert [got_id for _, got_id in receiver.verified()] == [webhook_id] * 2


async def test_unreachable_endpoint_is_retried_then_buried(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    async with Outbox(path, [closed_port_url()], SECRET, max_age_s=0.5, **FAST) as outbox:
        await outbox.enqueue(EVENT)
        await until(lambda: drained(outbox))
    [row] = rows(path)
    assert row["status"] == "dead" and row["attempts"] >= 2
    assert "ConnectError" in row["last_error"]


async def test_gives_up_after_max_age(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver, fail_first=10_000)
    results: list[str] = []
    path = tmp_path / "o.sqlite3"
    async with Outbox(
        path, [receiver.url], SECRET, max_age_s=0.2, on_result=results.append, **FAST
    ) as outbox:
        await outbox.enqueue(EVENT)
        await until(lambda: drained(outbox))
        assert await outbox.dead_count() == 1
    assert results[-1] == "dead" and set(results[:-1]) <= {"retry"}
    [row] = rows(path)
    assert row["status"] == "dead" and row["attempts"] == len(results)
    assert row["last_error"] == "HTTP 500"


async def test_submit_is_flushed_by_aclose(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver)
    path = tmp_path / "o.sqlite3"
    first = Outbox(path, [receiver.url], SECRET, **FAST)
    webhook_id = first.submit(EVENT)  # from sync code, e.g. an end listener
    await first.aclose()
    assert [r["webhook_id"] for r in rows(path)] == [webhook_id]


async def test_sigkill_after_enqueue_loses_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    receiver = Receiver(httpserver)
    path = tmp_path / "o.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(path),
        receiver.url,
        SECRET,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(child.communicate(), timeout=20)
    assert child.returncode == -9  # killed, not exited
    webhook_id = out.decode().strip()
    assert webhook_id.startswith("msg_")

    async with Outbox(path, [receiver.url], SECRET, **FAST) as outbox:
        await until(lambda: drained(outbox))
    [(payload, got_id)] = receiver.verified()
    assert got_id == webhook_id
    assert payload["data"]["call_id"] == "rtc_crash"


@pytest.mark.parametrize("attempts", [1, 3, 20])
def test_backoff_is_capped_and_jittered(tmp_path: Path, attempts: int) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", [], SECRET, backoff_base_s=1.0, backoff_max_s=600)
    delays = [outbox._backoff(attempts) for _ in range(50)]
    assert all(1.0 <= d <= min(2 ** (attempts - 1), 600) for d in delays)
    if attempts > 1:
        assert len(set(delays)) > 1
