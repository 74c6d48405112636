"""callserver side by side with the agents SDK's twilio_sip way (issue 12): one command.

``python bench/sidebyside.py`` prints one table, callserver against the example-style
server (bench/sip_example.py), with the ratio and the issue's goal for each figure, then
the 2,000-call tool round trip of callserver alone.

Each run is a fresh pair of processes: the caller side (fake OpenAI + open-loop webhook
sender, bench/caller_side.py) and the server under test that it starts. Servers: the
example, callserver with recording off, callserver with recording on. Loads: 200 calls
at 40/s and 1,000 calls at 100/s (after 20 warm-up calls that are not counted), callers
staying on the line until all are attached. Runs are interleaved (example, callserver,
callserver-rec, then the next load; the order rotates each repeat) and each figure is the
median over ``--repeat`` runs, because the 2 cores are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
LOADS = {"40": (200, 40.0), "100": (1000, 100.0)}
QUICK_LOADS = {"40": (60, 40.0), "100": (150, 100.0)}
SERVERS = ("example", "callserver", "callserver-rec")
RSS_GOAL_MIB = 130.0
TRIP_GOAL_MS = 20.0


def run_child(script: str, args: list[str]) -> dict[str, Any]:
    """Run one bench child and return the JSON object it prints last."""
    argv = [sys.executable, str(BENCH / script), *args]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_matrix(
    loads: dict[str, tuple[int, float]], repeat: int, warmup: int
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every (server, load) ``repeat`` times, interleaved; results by (server, load)."""
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rep in range(repeat):
        order = SERVERS[rep % 3 :] + SERVERS[: rep % 3]
        for load, (calls, rate) in loads.items():
            for server in order:
                started = time.monotonic()
                args = ["--server", server, "--calls", str(calls), "--rate", str(rate)]
                result = run_child("caller_side.py", [*args, "--warmup", str(warmup)])
                results.setdefault((server, load), []).append(result)
                print(
                    f"[{rep + 1}/{repeat}] {server:<14} {calls} @ {rate:g}/s: "
                    f"accept p99 {result['accept_p99_ms']:.1f} ms, "
                    f"cpu {result['setup_cpu_ms']:.2f} ms/call, "
                    f"{result['kib_per_call']:.0f} KiB/call "
                    f"({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def ratio_row(
    figure: str, unit: str, example: float, ours: float, limit: float | None
) -> list[str]:
    """One line: both values, ours / example, the goal and whether it is met."""
    ratio = ours / example if example else float("inf")
    goal = f"<= {limit:.1f}x" if limit is not None else "-"
    ok = "" if limit is None else ("yes" if ratio <= limit else "NO")
    return [figure, f"{example:.2f} {unit}", f"{ours:.2f} {unit}", f"{ratio:.2f}x", goal, ok]


def table_rows(
    results: dict[tuple[str, str], list[dict[str, Any]]], loads: dict[str, tuple[int, float]]
) -> list[list[str]]:
    rows: list[list[str]] = []
    for load, (calls, rate) in loads.items():
        ex = results[("example", load)]
        cs = results[("callserver", load)]
        rec = results[("callserver-rec", load)]
        at = f"{calls} @ {rate:g}/s"
        rows += [
            ratio_row(
                f"accept p50, {at}",
                "ms",
                median(ex, "accept_p50_ms"),
                median(cs, "accept_p50_ms"),
                None,
            ),
            ratio_row(
                f"accept p99, {at}",
                "ms",
                median(ex, "accept_p99_ms"),
                median(cs, "accept_p99_ms"),
                1.0,
            ),
            ratio_row(
                f"set-up CPU/call, {at}",
                "ms",
                median(ex, "setup_cpu_ms"),
                median(cs, "setup_cpu_ms"),
                0.8,
            ),
            ratio_row(
                f"set-up CPU/call, {at}, rec on",
                "ms",
                median(ex, "setup_cpu_ms"),
                median(rec, "setup_cpu_ms"),
                None,
            ),
            ratio_row(
                f"memory/attached call, {at}",
                "KiB",
                median(ex, "kib_per_call"),
                median(cs, "kib_per_call"),
                1.0,
            ),
            ratio_row(
                f"memory/attached call, {at}, rec on",
                "KiB",
                median(ex, "kib_per_call"),
                median(rec, "kib_per_call"),
                1.2,
            ),
            [
                f"calls never attached / webhooks redelivered, {at}",
                _failures(ex),
                _failures(cs),
                "-",
                "-",
                "",
            ],
            ratio_row(
                f"hang-up -> all sockets closed, {at}",
                "s",
                median(ex, "hangup_s"),
                median(cs, "hangup_s"),
                None,
            ),
        ]
    ex_all = [r for (s, _), runs in results.items() if s == "example" for r in runs]
    cs_all = [r for (s, _), runs in results.items() if s == "callserver" for r in runs]
    ex_rss, cs_rss = median(ex_all, "rss_start_mib"), median(cs_all, "rss_start_mib")
    row = ratio_row("RSS at start", "MiB", ex_rss, cs_rss, None)
    row[4], row[5] = f"<= {RSS_GOAL_MIB:.0f} MiB", "yes" if cs_rss <= RSS_GOAL_MIB else "NO"
    rows.append(row)
    return rows


def tool_rows(result: dict[str, Any]) -> list[list[str]]:
    trip_ok = "yes" if result["trip_p99_ms"] < TRIP_GOAL_MS else "NO"
    answered = f"{result['answered']} of {result['turns']} (failed {result['send_failed']})"
    return [
        ["attached calls (at the end)", f"{result['attached_at_end']} of {result['calls']}", ""],
        ["tool turns answered", answered, ""],
        ["tool round trip p50", f"{result['trip_p50_ms']:.1f} ms", ""],
        ["tool round trip p99", f"{result['trip_p99_ms']:.1f} ms", f"< 20 ms: {trip_ok}"],
        ["tool round trip max", f"{result['trip_max_ms']:.1f} ms", ""],
        ["tool round trip p99, second half", f"{result['trip_p99_second_half_ms']:.1f} ms", ""],
        ["server CPU per tool turn", f"{result['cpu_per_turn_ms']:.2f} ms", ""],
        ["server CPU (cores) / caller side", _shares(result), ""],
        ["RSS start / attached / end", _rss(result), ""],
        ["turns sent late, p99", f"{result['turn_lag_p99_ms']:.1f} ms", "caller side lag"],
    ]


def _failures(runs: list[dict[str, Any]]) -> str:
    """Summed over the repeats: calls that never attached, webhooks sent again."""
    missing = sum(r["not_attached"] for r in runs)
    return f"{missing} / {sum(r['webhook_retries'] for r in runs)}"


def _shares(result: dict[str, Any]) -> str:
    return f"{result['server_cpu_share']:.2f} / {result['caller_side_cpu_share']:.2f}"


def _rss(result: dict[str, Any]) -> str:
    return (
        f"{result['rss_start_mib']:.0f} / {result['rss_attached_mib']:.0f} / "
        f"{result['rss_end_mib']:.0f} MiB"
    )


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A markdown table (pastes into bench/README.md as is)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for development")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*LOADS, "tools"],
        help="run only this part (repeatable): the 40/s load, the 100/s load, the tool test",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per server and load")
    parser.add_argument("--tool-calls", type=int, default=2000)
    parser.add_argument("--tool-seconds", type=float, default=60.0)
    args = parser.parse_args()
    parts = args.only or [*LOADS, "tools"]
    all_loads = QUICK_LOADS if args.quick else LOADS
    loads = {k: v for k, v in all_loads.items() if k in parts}
    warmup = 10 if args.quick else 20
    if loads:
        results = run_matrix(loads, args.repeat, warmup)
        print(f"\nside by side: medians of {args.repeat} runs, 2 shared cores\n")
        header = ["figure", "example", "callserver", "ratio", "goal", "ok"]
        print_table(header, table_rows(results, loads))
    if "tools" in parts:
        calls = 300 if args.quick else args.tool_calls
        seconds = 20.0 if args.quick else args.tool_seconds
        print(f"[tools] {calls} calls, a tool turn every 10 s, {seconds:g} s", file=sys.stderr)
        result = run_child(
            "tool_turns.py", ["--calls", str(calls), "--seconds", str(seconds), "--period", "10"]
        )
        print(f"\ncallserver alone: {calls} attached calls, a tool turn every 10 s each\n")
        print_table(["figure", "value", "goal"], tool_rows(result))


if __name__ == "__main__":
    main()
