"""A second SIGTERM/SIGINT during a drain (issue 13, item 1): through a real process.

The first signal starts the drain and the instance keeps listening (webhooks get 503); the
second hangs up what is live, writes the records (the post-call event lands in the durable
outbox) and exits at once with the exit code documented in README "Shutdown".
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from callserver.serve import EXIT_FORCED
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from tests.e2e import wait_for
from tests.test_process import service_env, start_service

DRAIN_S = 12.0
POSTCALL_SECRET = "whsec_" + "c2Vjb25kLXNpZ25hbC1wb3N0Y2FsbC10ZXN0LXNlY3JldA=="


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)],
    ids=["sigterm-twice", "double-ctrl-c"],
)
async def test_second_signal_hangs_up_records_and_exits_at_once(
    fake_openai: FakeOpenAI, tmp_path: Path, signals: tuple[signal.Signals, signal.Signals]
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    env = service_env(
        fake_openai,
        CALLSERVER_DRAIN_TIMEOUT=str(DRAIN_S),
        # Nobody listens there: the event must wait in the outbox, not be lost.
        CALLSERVER_POSTCALL_URLS=f"http://127.0.0.1:{free_port()}/hooks",
        CALLSERVER_POSTCALL_SECRET=POSTCALL_SECRET,
        CALLSERVER_OUTBOX_PATH=str(outbox),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await start_service(env, port)
    try:
        call_id, response = await fake_openai.send_incoming_call(
            f"{url}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        assert response.status_code == 200, response.text
        await fake_openai.wait_connected(call_id)

        proc.send_signal(signals[0])
        async with httpx.AsyncClient(timeout=2) as client:

            async def draining() -> bool:
                try:
                    return (await client.get(f"{url}/readyz")).status_code == 503
                except httpx.HTTPError:
                    return False

            await wait_for(draining, timeout=5, what="readyz 503")
            await asyncio.sleep(0.5)  # well into the drain: still listening, still 503
            late, late_response = await fake_openai.send_incoming_call(
                f"{url}/webhooks/openai", TEST_WEBHOOK_SECRET, client=client
            )
        assert late_response.status_code == 503
        assert late_response.headers["retry-after"]
        assert not fake_openai.hangup_observed(call_id)  # the drain lets the call go on

        proc.send_signal(signals[1])
        second = time.monotonic()
        code = await asyncio.wait_for(proc.wait(), timeout=DRAIN_S)
        elapsed = time.monotonic() - second
        assert code == EXIT_FORCED, code
        assert elapsed < 3.0, f"exited {elapsed:.1f}s after the second signal"
        assert fake_openai.hangup_observed(call_id)
        assert fake_openai.requests_for(late, "accept") == []
        _, stderr = await proc.communicate()
        lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        ended = [line for line in lines if line.get("msg") == "call ended"]
        assert [(e["call_id"], e["end_reason"]) for e in ended] == [(call_id, "shutdown")]
        assert any("second signal" in line["msg"] for line in lines), lines
        with sqlite3.connect(outbox) as db:
            rows = db.execute("SELECT body FROM outbox").fetchall()
            jobs = [row[0] for row in db.execute("SELECT call_id FROM analysis_jobs")]
        events = [json.loads(row[0]) for row in rows]
        call_ended = [e for e in events if e["type"] == "call.ended"]
        assert [e["data"]["call_id"] for e in call_ended] == [call_id]
        assert call_ended[0]["data"]["end_reason"] == "shutdown"
        # The front desk's analysis is durable too: done, or waiting for the next start.
        analyzed = [e["data"]["call_id"] for e in events if e["type"] == "call.analyzed"]
        assert analyzed + jobs == [call_id]
        assert {e["type"] for e in events} <= {"call.ended", "call.analyzed"}
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
