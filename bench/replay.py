"""Replay benchmark: ``python bench/replay.py`` prints a table. Not a test.

Replays N cassettes (default 100, cycling through ``tests/replays/``, ~40 events each) through
one fake OpenAI and one callserver, as ``callserver replay`` and the pytest plugin do.
Target: 100 cassettes of ~50 events in under 10 s, start-up included.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callserver.records.cassette_reader import read_cassette
from callserver.testing.replay import Replayer, find_cassettes

CONFIG = ROOT / "config" / "agents.yaml"
TARGET_S = 10.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(n: int, concurrency: int) -> list[tuple[str, str, str]]:
    sources = find_cassettes([ROOT / "tests" / "replays"])
    cassettes = [read_cassette(p) for p in islice(cycle(sources), n)]
    events = sum(len(c.entries) for c in cassettes) / len(cassettes)
    started = time.perf_counter()
    async with Replayer(CONFIG, concurrency=concurrency) as replayer:
        ready = time.perf_counter()
        results = await replayer.replay_all(cassettes)
        replayed = time.perf_counter()
    total = time.perf_counter() - started
    failed = [r for r in results if not r.passed]
    per = [r.seconds for r in results]
    verdict = "ok" if total < TARGET_S and not failed else "MISSED"
    return [
        ("cassettes replayed", f"{n}", f"{len(failed)} failed, concurrency {concurrency}"),
        ("events per cassette (mean)", f"{events:.0f}", "lines between header and footer"),
        ("start-up (fake + callserver)", f"{ready - started:.2f} s", ""),
        ("replay of all cassettes", f"{replayed - ready:.2f} s", ""),
        ("events replayed per second", f"{events * n / (replayed - ready):.0f}", ""),
        (
            "per cassette p50 / p95",
            f"{pct(per, 50):.2f} / {pct(per, 95):.2f} s",
            "wall, concurrent",
        ),
        ("total", f"{total:.2f} s", f"target < {TARGET_S:g} s: {verdict}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("callserver").setLevel(logging.ERROR)
    rows = asyncio.run(bench(args.n, args.concurrency))
    width = max(len(r[0]) for r in rows)
    print(f"{'replay benchmark':<{width}}  {'value':>14}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
