"""callserver benchmarks: ``python bench/run.py`` prints a table. Not a test.

1. webhook -> accept latency, per engine: a signed ``realtime.call.incoming`` (Realtime) or
   ``live.transport.incoming`` (GPT-Live) is POSTed to callserver; the clock stops when the
   fake OpenAI (same process, loopback) receives the accept.
2. verified webhooks per second over HTTP (signed, unhandled event type: verify + parse).
3. signature verifications per second in-process (svix HMAC + our checks).
4. memory per attached call, per engine: 200 concurrent calls with live agent sessions (the
   Realtime control websocket, or the Live sideband); the fake OpenAI runs in a child
   process so only callserver's memory is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import (
    TEST_WEBHOOK_SECRET,
    free_port,
    run_callserver,
    test_settings,
)
from callserver.testing.process import start_serve, wait_ready
from callserver.testing.webhook_sender import incoming_call_event, live_incoming_event, sign
from callserver.webhooks.signature import SignatureVerifier

CONFIG = ROOT / "config" / "agents.yaml"
CONFIGS = {"realtime": CONFIG, "live": ROOT / "config" / "frontdesk_live.yaml"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _incoming(engine: str, call_id: str | None = None) -> bytes:
    if engine == "live":
        return json.dumps(live_incoming_event(call_id or f"live_{os.urandom(8).hex()}")).encode()
    return json.dumps(incoming_call_event(call_id)).encode()


async def accept_latency(n: int, engine: str = "realtime") -> dict[str, float]:
    """End to end (client send -> fake receives accept) and inside callserver (webhook
    received -> accept request sent, from the call record)."""
    latencies: list[float] = []
    inside: list[float] = []
    async with FakeOpenAI() as fake:
        settings = test_settings(fake.base_url, CONFIGS[engine], max_concurrent_calls=n + 10)
        async with run_callserver(settings) as server, httpx.AsyncClient() as client:
            gc.collect()
            gc.freeze()  # as `callserver serve` does after start-up (callserver/serve.py)
            for _ in range(n):
                call_id = fake.live.add_session() if engine == "live" else fake.add_call()
                body = _incoming(engine, call_id)
                headers = {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body)}
                sent = time.time()
                response = await client.post(server.webhook_url, content=body, headers=headers)
                assert response.status_code == 200
                while not fake.requests_for(call_id, "accept"):
                    await asyncio.sleep(0)
                latencies.append(fake.requests_for(call_id, "accept")[0].at - sent)
                record = await server.services.manager.registry.get(call_id)
                assert record is not None and record.accept_sent_mono is not None
                inside.append(record.accept_sent_mono - record.created_mono)
                if engine == "live":
                    await fake.live.wait_attached(call_id)
                    await fake.live.caller_hangs_up(call_id)
                else:
                    await fake.caller_hangs_up(call_id)
    return {
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "in_p50_ms": pct(inside, 50) * 1000,
        "in_p99_ms": pct(inside, 99) * 1000,
    }


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def webhook_throughput(n: int, concurrency: int = 32) -> tuple[float, float]:
    """callserver in its own process (as deployed), the load from this one.

    Returns (webhooks/s achieved, server CPU seconds per webhook). The Python load generator
    saturates first on 2 cores, so the CPU cost is the better measure of capacity.
    """
    body = json.dumps(
        {
            "object": "event",
            "id": "evt_x",
            "type": "response.completed",
            "created_at": 1,
            "data": {"id": "resp_1"},
        }
    ).encode()
    port = free_port()
    env = {
        **os.environ,
        "OPENAI_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "CALLSERVER_CONFIG": str(CONFIG),
        "CALLSERVER_LOG_LEVEL": "WARNING",
    }
    server = await start_serve(env, port)
    url = f"http://127.0.0.1:{port}/webhooks/openai"
    try:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            await wait_ready(port, process=server)
            signed = [
                {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body)}
                for _ in range(n)
            ]

            async def worker(batch: list[dict[str, str]]) -> None:
                for headers in batch:
                    response = await client.post(url, content=body, headers=headers)
                    assert response.status_code == 200

            started = time.perf_counter()
            cpu_before = _cpu_s(server.pid)
            await asyncio.gather(*(worker(signed[i::concurrency]) for i in range(concurrency)))
            elapsed = time.perf_counter() - started
            return n / elapsed, (_cpu_s(server.pid) - cpu_before) / n
    finally:
        server.terminate()
        await server.wait()


def verify_throughput(n: int) -> float:
    verifier = SignatureVerifier(TEST_WEBHOOK_SECRET)
    body = json.dumps(incoming_call_event("rtc_bench")).encode()
    headers = sign(TEST_WEBHOOK_SECRET, body)
    started = time.perf_counter()
    for _ in range(n):
        verifier.verify(body, headers)
    return n / (time.perf_counter() - started)


async def memory_per_call(n: int, engine: str = "realtime") -> dict[str, float]:
    port = free_port()
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callserver.testing.fake_openai",
            "--port",
            str(port),
            "--accept-any",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(200):
                try:
                    await client.post(f"{base_url}/realtime/calls/x/hangup")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
            settings = test_settings(base_url, CONFIGS[engine], max_concurrent_calls=n + 50)
            async with run_callserver(settings) as server:
                # Warm up with a few calls so one-time imports, caches and allocator arenas
                # are not counted per call.
                warm = 20
                for _ in range(warm):
                    await _place(client, server.webhook_url, engine)
                await _wait_sessions(server, warm)
                await asyncio.sleep(0.5)
                gc.collect()
                before = rss_mib()
                for _ in range(n):
                    await _place(client, server.webhook_url, engine)
                await _wait_sessions(server, n + warm, timeout=60)
                await asyncio.sleep(0.5)
                gc.collect()
                after = rss_mib()
                attached = len(server.services.manager._sessions)
                return {
                    "attached": attached,
                    "rss_before_mib": before,
                    "rss_after_mib": after,
                    "kib_per_call": (after - before) * 1024 / n,
                }
    finally:
        fake.terminate()
        fake.wait(10)


async def _place(client: httpx.AsyncClient, url: str, engine: str) -> None:
    body = _incoming(engine)
    headers = {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body)}
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text


async def _wait_sessions(server, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    manager = server.services.manager
    while time.monotonic() < deadline:
        live = [s for s in manager._sessions.values() if s.session is not None]
        if len(live) >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"only {len(manager._sessions)} sessions attached")


def _memory_in_child(n: int, engine: str) -> dict[str, float]:
    """Each memory run in a fresh interpreter: memory freed by an earlier run stays in the
    allocator's arenas and would be reused, hiding what the next run costs."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-only", engine, "--concurrent", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls for the latency run")
    parser.add_argument("--concurrent", type=int, default=200, help="calls for the memory run")
    parser.add_argument("--memory-only", choices=["realtime", "live"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.ERROR)
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    if args.memory_only:
        print(json.dumps(asyncio.run(memory_per_call(args.concurrent, args.memory_only))))
        return
    engines = ("realtime", "live")
    latency = {e: asyncio.run(accept_latency(args.calls, e)) for e in engines}
    http_rate, cpu_per_webhook = asyncio.run(webhook_throughput(3000))
    verify_rate = verify_throughput(20000)
    memory = {e: _memory_in_child(args.concurrent, e) for e in engines}
    rows = []
    for e in engines:
        lat = latency[e]
        rows += [
            (f"{e}: webhook -> accept-sent p50", f"{lat['in_p50_ms']:.2f} ms", "inside callserver"),
            (f"{e}: webhook -> accept-sent p99", f"{lat['in_p99_ms']:.2f} ms", "target < 10 ms"),
            (
                f"{e}: client -> fake accept p50",
                f"{lat['p50_ms']:.2f} ms",
                f"{args.calls} calls, both HTTP hops, one process",
            ),
            (f"{e}: client -> fake accept p99", f"{lat['p99_ms']:.2f} ms", "with client overhead"),
        ]
    rows += [
        ("verified webhooks/s (HTTP)", f"{http_rate:,.0f}", "client-bound (Python load)"),
        (
            "server CPU per verified webhook",
            f"{cpu_per_webhook * 1e6:.0f} us",
            f"= {1 / cpu_per_webhook:,.0f}/s per core (server in its own process)",
        ),
        ("signature checks/s (in-process)", f"{verify_rate:,.0f}", "svix HMAC-SHA256"),
    ]
    for e in engines:
        mem = memory[e]
        rows.append(
            (
                f"{e}: memory per attached call",
                f"{mem['kib_per_call']:.0f} KiB",
                f"{mem['attached']} concurrent sessions, RSS {mem['rss_before_mib']:.0f}"
                f" -> {mem['rss_after_mib']:.0f} MiB",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>12}  notes")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 40}")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
