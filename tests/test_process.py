"""The service as a process: start-up refusals, SIGTERM drain, SIGHUP reload."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve, wait_ready
from tests.conftest import ROOT
from tests.e2e import wait_for


def service_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
    env.update(
        OPENAI_API_KEY="sk-test-process",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        CALLSERVER_CONFIG=str(ROOT / "config" / "agents.yaml"),
        CALLSERVER_DRAIN_TIMEOUT="1",
        CALLSERVER_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


async def start_service(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    proc = await start_serve(env, port, cwd=ROOT, output=asyncio.subprocess.PIPE)
    await wait_ready(port, process=proc)
    return proc


async def test_sigterm_drains_then_exits_cleanly(fake_openai: FakeOpenAI) -> None:
    port = free_port()
    proc = await start_service(service_env(fake_openai), port)
    url = f"http://127.0.0.1:{port}"
    try:
        call_id, response = await fake_openai.send_incoming_call(
            f"{url}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        assert response.status_code == 200
        await fake_openai.wait_connected(call_id)
        proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=2) as client:
            await wait_for(
                lambda: _status(client, f"{url}/readyz", 503), timeout=3, what="readyz 503"
            )
            late, late_response = await fake_openai.send_incoming_call(
                f"{url}/webhooks/openai", TEST_WEBHOOK_SECRET, client=client
            )
        assert late_response.status_code == 503
        code = await asyncio.wait_for(proc.wait(), timeout=15)
        assert code == 0
        assert fake_openai.hangup_observed(call_id)
        assert fake_openai.requests_for(late, "accept") == []
        _, stderr = await proc.communicate()
        log = stderr.decode()
        assert '"end_reason": "shutdown"' in log
        assert TEST_WEBHOOK_SECRET.removeprefix("whsec_")[:12] not in log
        assert "sk-test-process" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _status(client: httpx.AsyncClient, url: str, status: int) -> bool:
    try:
        return (await client.get(url)).status_code == status
    except httpx.HTTPError:
        return False


def serve_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``callserver serve`` expecting it to refuse to start (it must exit by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "callserver.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_refuses_to_start_on_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "agents.yaml"
    bad.write_text("name: x\nstart: nobody\nagents: {}\nbogus_key: 1\n")
    env = {
        **os.environ,
        "OPENAI_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "CALLSERVER_CONFIG": str(bad),
    }
    result = serve_once(env)
    assert result.returncode == 1
    assert "refusing to start, invalid config" in result.stderr
    assert f"{bad}:4" in result.stderr and "bogus_key" in result.stderr


def test_refuses_to_start_without_webhook_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
    result = serve_once(env)
    assert result.returncode == 2
    assert "OPENAI_WEBHOOK_SECRET is not set" in result.stderr


async def test_insecure_flag_is_loud(fake_openai: FakeOpenAI) -> None:
    env = service_env(fake_openai, CALLSERVER_INSECURE_SKIP_SIGNATURE="true")
    del env["OPENAI_WEBHOOK_SECRET"]
    port = free_port()
    proc = await start_service(env, port)
    try:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)
        _, stderr = await proc.communicate()
        assert "signatures are NOT checked" in stderr.decode()
        assert '"level": "critical"' in stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sighup_reloads_config(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text("name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: One.\n")
    port = free_port()
    proc = await start_service(service_env(fake_openai, CALLSERVER_CONFIG=str(config)), port)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            before = (await client.get(url)).json()["config_hash"]
            config.write_text("name: g\nstart: a\nagents: {a: {name: A, bogus: 1}}\n")
            proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.0)
            assert (await client.get(url)).json()["config_hash"] == before  # invalid: kept
            config.write_text(
                "name: g\nstart: a\nagents:\n  a:\n    name: A\n    instructions: Two.\n"
            )
            proc.send_signal(signal.SIGHUP)

            async def changed() -> bool:
                return (await client.get(url)).json()["config_hash"] != before

            await wait_for(changed, timeout=10, what="reloaded config")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
        _, stderr = await proc.communicate()
        assert "config reload refused" in stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_post_call_event_survives_kill_9(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """The receiver is down when the call ends; callserver is killed (-9) before it can
    deliver; the restarted process delivers the same signed event."""
    import json
    import sqlite3

    from pytest_httpserver import HTTPServer
    from svix.webhooks import Webhook

    secret = "whsec_" + "a2lsbC1uaW5lLXBvc3RjYWxsLXRlc3Qtc2VjcmV0IQ=="
    outbox = tmp_path / "outbox.sqlite3"
    receiver_port = free_port()
    down = f"http://127.0.0.1:{receiver_port}/hooks"  # nothing listens here yet
    env = service_env(
        fake_openai,
        CALLSERVER_POSTCALL_URLS=down,
        CALLSERVER_POSTCALL_SECRET=secret,
        CALLSERVER_OUTBOX_PATH=str(outbox),
    )
    port = free_port()
    proc = await start_service(env, port)
    try:
        call_id, _ = await fake_openai.send_incoming_call(
            f"http://127.0.0.1:{port}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        conn = await fake_openai.wait_connected(call_id)
        await conn.expect("session.update")  # attached: a drop now is the caller hanging up
        await fake_openai.caller_hangs_up(call_id)

        def queued() -> bool:
            if not outbox.exists():
                return False
            with sqlite3.connect(outbox) as db:
                sql = "SELECT count(*) FROM outbox WHERE event_type = 'call.ended'"
                return db.execute(sql).fetchone()[0] == 1

        await wait_for(queued, timeout=10, what="event in the outbox")
        proc.kill()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    httpserver = HTTPServer(host="127.0.0.1", port=receiver_port)  # the receiver is back
    httpserver.expect_request("/hooks", method="POST").respond_with_data("ok")
    httpserver.start()
    proc = await start_service(env, free_port())
    try:

        def ended() -> list[Any]:  # the front desk's call.analyzed may come first
            return [r for r, _ in httpserver.log if b'"call.ended"' in r.get_data()]

        await wait_for(ended, timeout=15, what="delivery")
        request = ended()[0]
        Webhook(secret).verify(request.get_data(), dict(request.headers))
        event = json.loads(request.get_data())
        assert event["type"] == "call.ended" and event["data"]["call_id"] == call_id
        assert event["data"]["end_reason"] == "caller_hangup"
    finally:
        httpserver.stop()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)


async def test_json_logs_are_plain_json_lines(fake_openai: FakeOpenAI) -> None:
    """Every line on stderr is one JSON object with one message: no uvicorn
    ``color_message`` and no ANSI escape codes (issue 13, item 10)."""
    import json

    port = free_port()
    proc = await start_service(service_env(fake_openai), port)
    try:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
        _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = stderr.decode()
    assert "\x1b" not in text and "\\u001b" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(line["msg"].startswith("Started server process") for line in lines), lines
    for line in lines:
        assert "color_message" not in line, line
        assert isinstance(line["msg"], str)


async def test_default_config_is_the_bundled_directory_with_its_routes(
    fake_openai: FakeOpenAI,
) -> None:
    """``callserver serve`` in the project folder, CALLSERVER_CONFIG unset: every bundled
    graph loads and config/routes.yaml routes by the number dialed (issue 13, item 3)."""
    env = service_env(fake_openai)
    del env["CALLSERVER_CONFIG"]
    port = free_port()
    proc = await start_service(env, port)
    url = f"http://127.0.0.1:{port}/webhooks/openai"
    try:
        calls = [
            (await fake_openai.send_incoming_call(url, TEST_WEBHOOK_SECRET, to=number))[0]
            for number in ("+18005550100", "+18005559999")
        ]
        orders, other = calls
        for call_id in calls:
            await fake_openai.wait_connected(call_id)
        accepted = {c: fake_openai.requests_for(c, "accept")[0].json["instructions"] for c in calls}
        assert "status of their orders" in accepted[orders]
        assert "main customer service agent" in accepted[other]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)
