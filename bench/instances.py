"""Several instances on one Redis: ``python bench/instances.py`` prints a table. Not a test.

Three ``callserver serve`` processes share one Redis (a key prefix of their own) and one
fake OpenAI (in this process). A burst of N distinct calls plus N duplicate deliveries
(half with the same webhook-id, half redelivered with a new one) is spread round-robin over
the instances. Reported: accept latency (client send -> fake receives the accept, both on
this machine's clock), how many calls were accepted, and double accepts (must be 0).
The fake refuses the control websocket, so the run measures admission and accept, not
sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve, wait_ready
from callserver.testing.webhook_sender import incoming_call_event, sign

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def start_instances(
    fake: FakeOpenAI, count: int, prefix: str
) -> list[tuple[int, asyncio.subprocess.Process]]:
    out = []
    for index in range(count):
        port = free_port()
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
            "CALLSERVER_CONFIG": str(ROOT / "config" / "agents.yaml"),
            "CALLSERVER_MAX_CALLS": "5000",
            "CALLSERVER_RING_DEADLINE": "10",
            "CALLSERVER_LOG_LEVEL": "ERROR",
            "CALLSERVER_DRAIN_TIMEOUT": "0",
            "REDIS_URL": REDIS_URL,
            "CALLSERVER_REDIS_PREFIX": prefix,
            "CALLSERVER_INSTANCE_ID": f"bench-{index}",
        }
        proc = await start_serve(env, port)
        out.append((port, proc))
    return out


async def run(calls: int, instances: int) -> dict[str, float]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    async with FakeOpenAI() as fake:
        fake.fail("realtime", status=404, times=10 * calls)
        fleet = await start_instances(fake, instances, prefix)
        try:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                await asyncio.gather(*(wait_ready(port, process=p) for port, p in fleet))
                urls = [f"http://127.0.0.1:{port}/webhooks/openai" for port, _ in fleet]
                deliveries: list[tuple[str, str, bytes, dict[str, str]]] = []
                for n in range(calls):
                    call_id = fake.add_call()
                    body = json.dumps(incoming_call_event(call_id)).encode()
                    first = sign(TEST_WEBHOOK_SECRET, body)
                    again = first if n % 2 else sign(TEST_WEBHOOK_SECRET, body)
                    deliveries.append((call_id, urls[n % instances], body, first))
                    deliveries.append((call_id, urls[(n + 1) % instances], body, again))
                sent_at: dict[str, float] = {}
                semaphore = asyncio.Semaphore(64)

                async def deliver(call_id: str, url: str, body: bytes, headers: dict) -> int:
                    async with semaphore:
                        sent_at.setdefault(call_id, time.time())
                        response = await client.post(
                            url,
                            content=body,
                            headers={"content-type": "application/json", **headers},
                        )
                        return response.status_code

                started = time.perf_counter()
                statuses = await asyncio.gather(*(deliver(*d) for d in deliveries))
                call_ids = list(dict.fromkeys(d[0] for d in deliveries))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not all(
                    fake.requests_for(c, "accept") for c in call_ids
                ):
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                await asyncio.sleep(0.5)  # let any late double accept show up
                accepts = {c: fake.requests_for(c, "accept") for c in call_ids}
                latencies = [accepts[c][0].at - sent_at[c] for c in call_ids if accepts[c]]
                return {
                    "deliveries": len(deliveries),
                    "non_2xx": sum(1 for s in statuses if s >= 300),
                    "accepted": sum(1 for c in call_ids if accepts[c]),
                    "double": sum(1 for c in call_ids if len(accepts[c]) > 1),
                    "p50_ms": pct(latencies, 50) * 1000,
                    "p99_ms": pct(latencies, 99) * 1000,
                    "elapsed_s": elapsed,
                }
        finally:
            for _, proc in fleet:
                proc.terminate()
            for _, proc in fleet:
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
            await _cleanup(prefix)


async def _cleanup(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.instances))
    rows = [
        ("deliveries", f"{result['deliveries']}", f"{args.calls} calls + {args.calls} duplicates"),
        ("non-2xx answers", f"{result['non_2xx']}", "duplicates are answered 200"),
        ("calls accepted", f"{result['accepted']}", f"of {args.calls}"),
        ("double accepts", f"{result['double']}", "must be 0"),
        ("accept latency p50", f"{result['p50_ms']:.1f} ms", "client send -> fake got accept"),
        ("accept latency p99", f"{result['p99_ms']:.1f} ms", "whole burst in flight"),
        ("burst wall time", f"{result['elapsed_s']:.2f} s", f"{args.instances} instances"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>10}  notes")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 36}")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
