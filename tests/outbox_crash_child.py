"""Child process for the outbox crash test: enqueue one event, print its webhook id, then die
with SIGKILL (no cleanup, no atexit, no flush of anything but what enqueue committed).

Usage: python outbox_crash_child.py DB_PATH ENDPOINT SECRET
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from callserver.records.outbox import Outbox


async def main(path: str, endpoint: str, secret: str) -> None:
    outbox = Outbox(path, [endpoint], secret)
    webhook_id = await outbox.enqueue({"type": "call.ended", "data": {"call_id": "rtc_crash"}})
    sys.stdout.write(webhook_id + "\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
