"""A rolling deploy under load: ``python bench/deploy.py`` prints a table. Not a test.

Three ``callserver serve`` processes share the local Redis (db 15, a key prefix of their own)
and one fake OpenAI (in this process). 100 live calls (a fifth of them on GPT-Live) each get
a tool turn every two seconds. Then the fleet is replaced one instance at a time, as a
rolling deploy does: a new instance starts, the old one gets SIGTERM and hands its calls
over. Reported: calls lost (hung up, or no longer answering), tool calls lost or answered
twice (run twice), and the control gap: per call, the longest time a tool call waited for
its answer during the deploy (a hand-over holds events back while the old owner finishes
its tools; make-after-break adds the time without any connection).

``--single-connection`` makes the fake allow one control connection per call (the hand-over
is then make-after-break).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callserver.testing import server_events as ev
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve, wait_ready
from tests.redis_support import delete_prefix

REDIS_URL = os.environ.get("CALLSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LIVE_NUMBER = "+18005550199"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if values else 0.0


class Fleet:
    def __init__(self, fake: FakeOpenAI, prefix: str, logs: Path) -> None:
        self.fake, self.prefix, self.logs = fake, prefix, logs
        self.procs: list[tuple[str, int, asyncio.subprocess.Process]] = []
        self.count = 0

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
        env.update(
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=self.fake.base_url,
            OPENAI_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
            CALLSERVER_CONFIG=str(ROOT / "config"),
            CALLSERVER_LOG_LEVEL="WARNING",
            CALLSERVER_DRAIN_TIMEOUT="60",
            REDIS_URL=REDIS_URL,
            CALLSERVER_REDIS_PREFIX=self.prefix,
            CALLSERVER_REDIS_LEASE="3",
            CALLSERVER_INSTANCE_ID=name,
            CALLSERVER_MAX_CALLS="200",
        )
        return env

    async def start(self) -> tuple[str, int]:
        name = f"i{self.count}"
        self.count += 1
        port = free_port()
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = await start_serve(self.env(name), port, cwd=ROOT, output=out)
        await wait_ready(port, process=proc)
        self.procs.append((name, port, proc))
        return name, port

    async def stop_all(self) -> None:
        for _, _, proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for _, _, proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()


class Driver:
    """Tool turns on every call: each sent once; outputs counted by function-call id."""

    def __init__(self, fake: FakeOpenAI, every_s: float) -> None:
        self.fake, self.every_s = fake, every_s
        self.rtts: dict[str, list[tuple[float, float]]] = {}
        self.sent = 0
        self.lost = 0
        self.twice = 0
        self.stop = asyncio.Event()

    def _outputs(self, call_id: str, fc: str) -> int:
        if call_id.startswith("live_"):
            session = self.fake.live.session(call_id)
            return sum(
                1
                for sideband in session.sidebands
                for e in sideband.received
                if e.get("type") == "response.item.create" and e["item"].get("call_id") == fc
            )
        return sum(
            1
            for conn in self.fake.connections.get(call_id, [])
            for e in conn.received
            if e.get("type") == "conversation.item.create" and e["item"].get("call_id") == fc
        )

    async def run(self, call_id: str, offset: float) -> None:
        await asyncio.sleep(offset)
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            if call_id.startswith("live_"):
                [fc] = await self.fake.live.delegate(call_id, [("get_weather", {"city": f"x{n}"})])
            else:
                fc = f"fc_{n}_{uuid.uuid4().hex[:8]}"
                await self.fake.broadcast(
                    call_id, ev.function_call_turn("get_weather", {"city": f"x{n}"}, fc)
                )
            self.sent += 1
            while self._outputs(call_id, fc) == 0 and time.monotonic() - started < 15:
                await asyncio.sleep(0.01)
            rtt = time.monotonic() - started
            if self._outputs(call_id, fc) == 0:
                self.lost += 1
            else:
                self.rtts.setdefault(call_id, []).append((started, rtt))
            await asyncio.sleep(max(self.every_s - rtt, 0.05))
            if self._outputs(call_id, fc) > 1:
                self.twice += 1


async def main(calls: int, every_s: float, single: bool) -> None:
    logging.disable(logging.ERROR)
    prefix = f"csbench:{uuid.uuid4().hex[:10]}:"
    logs = Path(tempfile.mkdtemp(prefix="callserver-deploy-"))
    async with FakeOpenAI() as fake:
        if single:
            fake.max_connections = 1
            fake.live.max_sidebands = 1
        fleet = Fleet(fake, prefix, logs)
        try:
            ports = [(await fleet.start())[1] for _ in range(3)]
            ids: list[str] = []
            async with httpx.AsyncClient(timeout=10) as client:
                for n in range(calls):
                    url = f"http://127.0.0.1:{ports[n % 3]}/webhooks/openai"
                    if n % 5 == 4:
                        sid, _ = await fake.send_live_incoming(
                            url, TEST_WEBHOOK_SECRET, to=LIVE_NUMBER, client=client
                        )
                        await fake.live.wait_attached(sid, 20)
                        ids.append(sid)
                    else:
                        call_id, _ = await fake.send_incoming_call(
                            url, TEST_WEBHOOK_SECRET, client=client
                        )
                        await fake.wait_connected(call_id, 20)
                        ids.append(call_id)
            driver = Driver(fake, every_s)
            tasks = [
                asyncio.create_task(driver.run(c, every_s * i / len(ids)))
                for i, c in enumerate(ids)
            ]
            await asyncio.sleep(every_s * 2)
            deploy_start = time.monotonic()
            steps = []
            for name, _port, proc in list(fleet.procs):
                await fleet.start()
                began = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
                steps.append((name, time.monotonic() - began, code))
            deploy_end = time.monotonic()
            await asyncio.sleep(every_s * 2)
            driver.stop.set()
            await asyncio.gather(*tasks)
            hung_up = [c for c in ids if fake.hangup_observed(c)]
            during = [
                max(
                    (rtt for at, rtt in driver.rtts.get(c, []) if deploy_start <= at <= deploy_end),
                    default=0.0,
                )
                for c in ids
            ]
            normal = [rtt for c in ids for at, rtt in driver.rtts.get(c, []) if at < deploy_start]
            not_answering = [
                c for c in ids if not any(at > deploy_end for at, _ in driver.rtts.get(c, []))
            ]
        finally:
            await fleet.stop_all()
            await delete_prefix(REDIS_URL, prefix)
    rows = [
        ("calls", f"{calls}", f"{calls - calls // 5} Realtime, {calls // 5} GPT-Live"),
        (
            "mode",
            "make-after-break" if single else "make-before-break",
            "one connection per call" if single else "two connections allowed",
        ),
        (
            "calls lost",
            f"{len(set(hung_up) | set(not_answering))}",
            "hung up, or no tool answer after the deploy (must be 0)",
        ),
        ("tool calls", f"{driver.sent}", f"one every {every_s:g} s per call"),
        ("tool calls lost", f"{driver.lost}", "no output within 15 s (must be 0)"),
        ("tool calls run twice", f"{driver.twice}", "two outputs for one call id (must be 0)"),
        (
            "tool round trip p50 (steady)",
            f"{statistics.median(normal) * 1000:.0f} ms",
            "before the deploy",
        ),
        (
            "control gap p50",
            f"{pct(during, 50) * 1000:.0f} ms",
            "per call: slowest tool answer during the deploy",
        ),
        ("control gap p99", f"{pct(during, 99) * 1000:.0f} ms", "goal: under 2 s"),
        ("control gap max", f"{max(during) * 1000:.0f} ms", ""),
    ]
    rows += [
        (f"SIGTERM -> exit ({name})", f"{s:.2f} s", f"exit code {code}") for name, s, code in steps
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>18}  notes")
    print(f"{'-' * width}  {'-' * 18}  {'-' * 40}")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--tool-every", type=float, default=2.0)
    parser.add_argument("--single-connection", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.tool_every, args.single_connection))
