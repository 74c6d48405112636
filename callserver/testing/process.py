"""Run callserver as a separate process (``callserver serve``) for tests and benchmarks.

What a deployment runs, with its own interpreter, signals and memory: the way to test
SIGTERM drains, SIGHUP reloads, ``kill -9`` and several instances sharing Redis.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx


async def start_serve(
    env: Mapping[str, str],
    port: int,
    *,
    cwd: Path | None = None,
    output: int | IO[bytes] | None = asyncio.subprocess.DEVNULL,
) -> asyncio.subprocess.Process:
    """Start ``callserver serve`` on 127.0.0.1:``port`` (returns at once; see wait_ready)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callserver.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=dict(env),
        cwd=cwd,
        stdout=output,
        # One file or DEVNULL takes both streams; PIPE keeps them apart (tests read stderr).
        stderr=asyncio.subprocess.PIPE
        if output is asyncio.subprocess.PIPE
        else asyncio.subprocess.STDOUT,
    )


async def wait_ready(
    port: int, *, process: asyncio.subprocess.Process | None = None, timeout: float = 30.0
) -> None:
    """Wait until ``/readyz`` answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=0.5) as client:
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"callserver exited during start-up ({process.returncode})")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"callserver on port {port} not ready after {timeout}s")
