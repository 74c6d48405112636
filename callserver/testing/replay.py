"""Replay recorded calls (cassettes) against the CURRENT config: every call a regression test.

A :class:`Replayer` runs one fake OpenAI and one callserver (the config under test, with
tools stubbed from the recordings unless asked to run them) and replays any number of
cassettes through them, concurrently::

    async with Replayer("config") as replayer:
        result = await replayer.replay("tests/replays/tool_call.cassette.jsonl")
        assert result.passed, result.report()

``callserver replay CASSETTE... [--config PATH]`` is :func:`run_replay_cli`, here with the
finding of cassettes; the engine is :mod:`~callserver.testing.replayer`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from callserver.graph import ConfigError
from callserver.graph.commands import explain
from callserver.testing.replayer import DEFAULT_CONFIG, Replayer, ReplayResult

__all__ = ["ReplayResult", "Replayer", "find_cassettes", "main", "run_replay_cli"]

SUFFIX = ".cassette.jsonl"


def find_cassettes(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given; directories searched recursively for ``*.cassette.jsonl``."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        else:
            found.append(path)
    return found


async def replay_paths(
    paths: Sequence[Path], config: Path | str, *, execute: Collection[str] = (), **kwargs: Any
) -> list[ReplayResult]:
    """Replay cassette files; unreadable ones become ``error`` results (with line numbers)."""
    async with Replayer(config, execute=execute, **kwargs) as replayer:
        return await replayer.replay_all(paths)


def run_replay_cli(
    paths: Sequence[Path | str],
    config: Path | str | None = None,
    *,
    execute: Collection[str] = (),
    execute_all: bool = False,
    out: TextIO | None = None,
) -> int:
    """``callserver replay``: print PASS/FAIL per cassette; 0 when all passed, else 1."""
    out = out or sys.stdout
    config = config or os.environ.get("CALLSERVER_CONFIG") or DEFAULT_CONFIG
    files = find_cassettes(paths)
    if not files:
        print("callserver replay: no cassettes found", file=out)
        return 1
    logging.getLogger("callserver").setLevel(logging.ERROR)  # the replayed calls' own logs
    try:
        results = asyncio.run(replay_paths(files, config, execute=execute, execute_all=execute_all))
    except ConfigError as exc:  # the same file:line report as ``serve`` and ``check``
        print(f"callserver replay: invalid config:\n{explain(exc, config)}", file=sys.stderr)
        return 1
    for result in results:
        print(result.report(), file=out)
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)
    return 0 if passed == len(results) else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``replay`` command's arguments (shared by the CLI and ``python -m``)."""
    parser.add_argument("cassettes", nargs="+", help="cassette files or directories")
    parser.add_argument("--config", help="config to replay against (default CALLSERVER_CONFIG)")
    parser.add_argument(
        "--execute",
        action="append",
        default=[],
        metavar="TOOL",
        help="run this tool for real instead of answering from the recording (repeatable)",
    )
    parser.add_argument("--execute-all", action="store_true", help="run every tool for real")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callserver replay", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_replay_cli(
        args.cassettes, args.config, execute=args.execute, execute_all=args.execute_all
    )


if __name__ == "__main__":
    sys.exit(main())
