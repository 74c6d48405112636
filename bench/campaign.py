"""A campaign of 1,000 rows against the fakes: ``python bench/campaign.py`` prints a table.

callserver runs as its own process (``callserver serve``, as deployed) with the GPT-Live
dialer; the fake GPT-Live service (outbound creates, sidebands, scripted callees that answer,
say hello and hang up) runs in this process. Measured from the fake's side, i.e. what the
phone network would see:

- dial rate: creates per second from the first to the last, against the configured pace
  (and its deviation, which must stay within 5%);
- peak concurrency: calls live at the fake when each new one is placed, against
  ``max_concurrent`` (a last run sets ``max_concurrent`` below what the pace needs: the
  rate then follows the calls' length, and the cap holds);
- double dials: numbers with more than one create (must be 0);
- per call: callserver's CPU seconds and its resident memory at the peak over its idle
  baseline, divided by the peak number of live calls.

Once with the SQLite campaign store, and once with Redis when ``REDIS_URL`` (or the test
Redis at 127.0.0.1:6379/15) answers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callserver.testing.fake_live_outbound import Callee
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve, wait_ready

CONFIG = ROOT / "bench" / "configs" / "campaign.yaml"
TOKEN = "bench-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        from redis import Redis

        client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
    except Exception:
        return None
    return url


async def run(rows: int, cpm: float, concurrent: int, store: str, tmp: Path) -> dict[str, Any]:
    async with FakeOpenAI() as fake:
        fake.live.outbound.default = Callee(ring_s=0.1, says="Hello?", hangs_up_after=0.4)
        live_at_create: list[int] = []

        def on_create(create: Any) -> None:
            live_at_create.append(
                sum(1 for s in fake.live.sessions.values() if s.outbound and s.state != "ended")
            )

        fake.live.outbound.on_create = on_create
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
        env.update(
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
            CALLSERVER_CONFIG=str(CONFIG),
            CALLSERVER_ADMIN_TOKEN=TOKEN,
            CALLSERVER_SIP_TRUNK_URL="sips:sip.example.com:5061",
            CALLSERVER_SIP_TRUNK_USERNAME="bench",
            CALLSERVER_SIP_TRUNK_PASSWORD="bench-password",
            CALLSERVER_CALLER_NUMBER="+14155550100",
            CALLSERVER_MAX_CALLS=str(concurrent * 4),
            CALLSERVER_CAMPAIGN_POLL="0.2",
            CALLSERVER_CAMPAIGN_DB=str(tmp / f"{store}.sqlite3"),
            CALLSERVER_LOG_LEVEL="WARNING",
        )
        prefix = f"csbench:{uuid.uuid4().hex[:8]}:"
        if store == "redis":
            env.update(REDIS_URL=redis_url() or "", CALLSERVER_REDIS_PREFIX=prefix)
        port = free_port()
        proc = await start_serve(env, port, cwd=ROOT)
        try:
            await wait_ready(port, process=proc)
            await asyncio.sleep(1.0)
            base_rss, base_cpu = rss_mib(proc.pid), cpu_s(proc.pid)
            peak_rss = base_rss
            body = {
                "graph": "survey",
                "rows": [{"to": f"+1415{n:07d}"} for n in range(rows)],
                "calls_per_minute": cpm,
                "max_concurrent": concurrent,
            }
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                created = await client.post("/admin/campaigns", json=body, headers=AUTH)
                assert created.status_code == 201, created.text
                campaign_id = created.json()["id"]
                while True:
                    info = (
                        await client.get(f"/admin/campaigns/{campaign_id}", headers=AUTH)
                    ).json()
                    peak_rss = max(peak_rss, rss_mib(proc.pid))
                    if info["state"] == "completed":
                        break
                    await asyncio.sleep(0.25)
            cpu = cpu_s(proc.pid) - base_cpu
        finally:
            proc.terminate()
            await proc.wait()
            if store == "redis":
                from redis.asyncio import Redis

                client_r = Redis.from_url(env["REDIS_URL"])
                keys = [k async for k in client_r.scan_iter(match=prefix + "*")]
                if keys:
                    await client_r.delete(*keys)
                await client_r.aclose()
        creates = [c for c in fake.live.outbound.creates if c.placed]
        times = sorted(c.at for c in creates)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        per_number = collections.Counter(c.destination for c in creates)
        peak = max(live_at_create) if live_at_create else 0
        return {
            "store": store,
            "rows": rows,
            "pace": cpm / 60,
            "rate": rate,
            "deviation": (rate - cpm / 60) / (cpm / 60),
            "peak": peak,
            "max_concurrent": concurrent,
            "double": sum(1 for n in per_number.values() if n > 1),
            "completed": info["outcomes"].get("completed", 0),
            "cpu_ms": cpu / rows * 1000,
            "kib_per_live_call": (peak_rss - base_rss) * 1024 / max(peak, 1),
            "peak_rss": peak_rss,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--cpm", type=float, default=3000.0, help="calls per minute")
    parser.add_argument("--max-concurrent", type=int, default=80)
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument(
        "--bound", type=int, default=20, help="also run with this max_concurrent (0: skip)"
    )
    args = parser.parse_args()
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    if "redis" in stores and redis_url() is None:
        print("(Redis not reachable: SQLite only)", file=sys.stderr)
        stores = [s for s in stores if s != "redis"]
    # (store, max_concurrent, whether the pace is the limit): the last scenario sets
    # max_concurrent below what the pace needs, to show that it binds and holds.
    scenarios = [(store, args.max_concurrent, True) for store in stores]
    if args.bound:
        scenarios.append((stores[0], args.bound, False))
    results = []
    with TemporaryDirectory() as tmp:
        for store, concurrent, paced in scenarios:
            result = asyncio.run(run(args.rows, args.cpm, concurrent, store, Path(tmp)))
            result["paced"] = paced
            results.append(result)
    header = (
        "| store | rows | pace (calls/s) | dial rate | deviation | peak live / max_concurrent "
        "| double dials | completed | CPU per call | RSS per live call | peak RSS |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in results:
        deviation = f"{r['deviation']:+.1%}" if r["paced"] else "(bound)"
        print(
            f"| {r['store']} | {r['rows']} | {r['pace']:.1f} | {r['rate']:.2f}/s | "
            f"{deviation} | {r['peak']} / {r['max_concurrent']} | {r['double']} | "
            f"{r['completed']} | {r['cpu_ms']:.1f} ms | {r['kib_per_live_call']:.0f} KiB | "
            f"{r['peak_rss']:.0f} MiB |"
        )
    ok = all(
        (abs(r["deviation"]) <= 0.05 or not r["paced"])
        and r["peak"] <= r["max_concurrent"]
        and r["double"] == 0
        and r["completed"] == r["rows"]
        for r in results
    )
    print("OK: pace within 5%, never above max_concurrent, no double dial" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
