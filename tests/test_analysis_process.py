"""A kill -9 between the end of a call and its analysis: real processes, one outbox file."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.postcall_receiver import PostCallReceiver
from callserver.testing.process import start_serve, wait_ready
from tests.analysis_support import POSTCALL_SECRET
from tests.conftest import ROOT
from tests.test_analysis_e2e import RESULT
from tests.test_process import service_env


async def serve(env: dict[str, str], log: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    with log.open("wb") as out:
        proc = await start_serve(env, port, cwd=ROOT, output=out)
    await wait_ready(port, process=proc)
    return proc, port


async def test_analysis_survives_kill_9_after_the_call_ended(
    fake_openai: FakeOpenAI, receiver: PostCallReceiver, tmp_path: Path
) -> None:
    env = service_env(
        fake_openai,
        CALLSERVER_POSTCALL_URLS=receiver.url,
        CALLSERVER_POSTCALL_SECRET=POSTCALL_SECRET,
        CALLSERVER_OUTBOX_PATH=str(tmp_path / "outbox.sqlite3"),
    )
    fake_openai.responses.delay(60)  # the first analysis hangs until its process is gone
    fake_openai.responses.answer(RESULT, times=2)
    first, port = await serve(env, tmp_path / "first.log")
    second = None
    try:
        call_id, _ = await fake_openai.send_incoming_call(
            f"http://127.0.0.1:{port}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        conn = await fake_openai.wait_connected(call_id)
        await conn.expect("session.update")
        await conn.send(ev.input_transcription_completed(None, "I want the weather in Oslo."))
        await conn.send(ev.assistant_turn("It is snowing in Oslo."))
        await fake_openai.caller_hangs_up(call_id)
        [(ended, _)] = await receiver.wait("call.ended")
        [in_flight] = await fake_openai.responses.wait_requests(1)
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        fake_openai.responses.release_delays()
        assert receiver.of_type("call.analyzed") == []

        second, _ = await serve(env, tmp_path / "second.log")
        [(analyzed, headers)] = await receiver.wait("call.analyzed", timeout=20)
        assert headers["webhook-id"] == ended["data"]["analysis"]["webhook_id"]
        data = analyzed["data"]
        assert data["call_id"] == call_id
        assert data["status"] == "completed" and data["result"] == RESULT
        requests = fake_openai.responses.requests
        assert len(requests) == 2 and requests[1].json == in_flight.json  # the stored job
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 15) == 0
        assert len(receiver.of_type("call.analyzed")) == 1
        logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
        assert "sk-test-process" not in logs
        assert POSTCALL_SECRET.removeprefix("whsec_")[:12] not in logs
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
