"""2,000 attached calls in one callserver process, each with a tool turn every 10 s.

The goal of issue 12: the tool round trip stays under 20 ms at p99 while one process
carries 2,000 calls. The caller side (fake OpenAI + webhook sender, see caller_side.py)
rings ``--calls`` calls open-loop, waits until all are attached, then, for ``--seconds``,
sends each call a scripted model turn that calls ``get_weather`` every ``--period`` s,
the calls staggered evenly over the period (200 turns/s for 2,000 calls every 10 s).

Round trip: from the fake starting to send the function-call turn to the fake receiving
that call's ``function_call_output`` item; both on the caller side's clock. The graph
(bench/configs/tool_turns.yaml) has a python tool that returns a canned string, so what is
measured is callserver's own path. Prints one JSON object::

    python bench/tool_turns.py --calls 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from caller_side import (
    Tracker,
    hang_up_all,
    lighten_fake,
    pct,
    ring_open_loop,
    running_server,
    signed_webhooks,
)
from procstat import cpu_s, raise_nofile, rss_kib

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.server_events import function_call_turn

CONFIG = BENCH / "configs" / "tool_turns.yaml"


def turn_schedule(call_ids: list[str], period: float, seconds: float) -> list[tuple[float, str]]:
    """(offset s, call id) of every tool turn, in time order: call i's first turn at
    ``i * period / n``, then every ``period``, so the load is even, not in bursts."""
    n = len(call_ids)
    turns = []
    for i, call_id in enumerate(call_ids):
        offset = i * period / n
        while offset < seconds:
            turns.append((offset, call_id))
            offset += period
    return sorted(turns)


async def send_turns(
    tracker: Tracker, schedule: list[tuple[float, str]]
) -> tuple[dict[str, float], list[float], int]:
    """Send each turn at its time (open loop); returns function-call id -> sent time,
    how late each left, and how many sends failed."""
    sent: dict[str, float] = {}
    lags: list[float] = []
    failed = 0
    tasks: list[asyncio.Task[None]] = []

    async def turn(call_id: str, number: int) -> None:
        nonlocal failed
        fc_id = f"fc_{call_id}_{number}"
        events = function_call_turn("get_weather", {"city": "Paris"}, call_id=fc_id)
        sent[fc_id] = time.time()
        try:
            await tracker.conns[call_id].send(events)
        except (ConnectionError, RuntimeError, OSError, TimeoutError):
            failed += 1
            sent.pop(fc_id, None)

    start = time.monotonic()
    for number, (offset, call_id) in enumerate(schedule):
        due = start + offset
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - due))
        tasks.append(asyncio.create_task(turn(call_id, number)))
    await asyncio.gather(*tasks)
    return sent, lags, failed


async def run_tools(calls: int, rate: float, period: float, seconds: float) -> dict[str, Any]:
    tracker = Tracker()
    async with FakeOpenAI() as fake:
        tracker.install(fake)
        limits = httpx.Limits(max_connections=4000, max_keepalive_connections=200)
        async with (
            running_server("callserver", fake, config=CONFIG) as server,
            httpx.AsyncClient(limits=limits, timeout=60) as client,
        ):
            await asyncio.sleep(0.5)
            rss_start = rss_kib(server.pid)
            hooks = signed_webhooks(fake, calls)
            sent_hooks, _, _ = await ring_open_loop(client, server.webhook_url, hooks, rate)
            missing = await tracker.wait_attached(list(sent_hooks), 300)
            await asyncio.sleep(1.0)
            rss_attached, cpu_before = rss_kib(server.pid), cpu_s(server.pid)
            own_before = cpu_s(os.getpid())
            schedule = turn_schedule(list(sent_hooks), period, seconds)
            sent, lags, failed = await send_turns(tracker, schedule)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(f not in tracker.outputs for f in sent):
                await asyncio.sleep(0.1)
            cpu_after, rss_after = cpu_s(server.pid), rss_kib(server.pid)
            own_cpu = cpu_s(os.getpid()) - own_before
            trips = [tracker.outputs[f] - t for f, t in sent.items() if f in tracker.outputs]
            half = min(sent.values(), default=0.0) + seconds / 2
            late = [
                tracker.outputs[f] - t for f, t in sent.items() if f in tracker.outputs and t > half
            ]
            attached_at_end = sum(1 for c in tracker.conns.values() if not c.closed.is_set())
            hangup_s = await hang_up_all(fake, tracker)
    return {
        "calls": calls,
        "not_attached": missing,
        "attached_at_end": attached_at_end,
        "turns": len(schedule),
        "answered": len(trips),
        "send_failed": failed,
        "trip_p50_ms": pct(trips, 50) * 1000,
        "trip_p99_ms": pct(trips, 99) * 1000,
        "trip_max_ms": max(trips, default=float("nan")) * 1000,
        "trip_p99_second_half_ms": pct(late, 99) * 1000,
        "cpu_per_turn_ms": (cpu_after - cpu_before) * 1000 / max(1, len(schedule)),
        "server_cpu_share": (cpu_after - cpu_before) / seconds,
        "caller_side_cpu_share": own_cpu / seconds,
        "rss_start_mib": rss_start / 1024,
        "rss_attached_mib": rss_attached / 1024,
        "rss_end_mib": rss_after / 1024,
        "turn_lag_p99_ms": pct(lags, 99) * 1000,
        "hangup_s": hangup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40.0, help="arrivals per second")
    parser.add_argument("--period", type=float, default=10.0, help="s between a call's turns")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the tool phase")
    parser.add_argument("--strict", action="store_true", help="keep the fake's schema checks")
    args = parser.parse_args()
    raise_nofile()
    if not args.strict:
        lighten_fake()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("callserver.testing").setLevel(logging.ERROR)
    result = asyncio.run(run_tools(args.calls, args.rate, args.period, args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
