"""Re-record the project's replay cassettes (tests/replays/) from scripted fake-server calls.

Run after a deliberate change in behaviour: ``python scripts/record_replays.py``. Each
scenario in ``callserver.testing.recording.SCENARIOS`` places one call against the local
fake OpenAI with recording on; its cassette becomes ``tests/replays/<name>.cassette.jsonl``.
Review the diff before committing: every cassette is a regression test.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def record(config: Path, directory: Path, names: list[str]) -> dict[str, str]:
    """Place one call per scenario with recording on; returns scenario -> call id."""
    from callserver.testing.recording import SCENARIOS, recording_server

    calls: dict[str, str] = {}
    async with recording_server(config, directory) as (fake, server, factory):
        for name in names:
            calls[name] = await SCENARIOS[name](fake, server)
        if factory.stats.write_errors:
            raise RuntimeError(f"cassette write errors: {factory.stats}")
    return calls


def collect(calls: dict[str, str], directory: Path, out: Path) -> int:
    """Move each call's cassette to ``out/<scenario>.cassette.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, call_id in calls.items():
        made = list(directory.rglob(f"{call_id}.cassette.jsonl"))
        if len(made) != 1:
            print(f"{name}: no cassette written for {call_id}", file=sys.stderr)
            return 1
        target = out / f"{name}.cassette.jsonl"
        shutil.move(made[0], target)
        print(f"{name}: {target}")
    return 0


def main() -> int:
    from callserver.testing.recording import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"scenarios (default all: {', '.join(SCENARIOS)})")
    parser.add_argument("--config", type=Path, default=ROOT / "config")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "replays")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {unknown}")
    with tempfile.TemporaryDirectory() as tmp:
        calls = asyncio.run(record(args.config, Path(tmp), args.names or list(SCENARIOS)))
        return collect(calls, Path(tmp), args.out)


if __name__ == "__main__":
    sys.exit(main())
