import asyncio
import os
import sys

import pytest

from tests.test_redis_registry import *  # noqa
from tests.test_redis_registry import test_coordinator_survives_redis_outage as orig  # noqa


@pytest.fixture(autouse=True)
async def watchdog():
    async def dog():
        await asyncio.sleep(6)
        print("HUNG", file=sys.stderr)
        for t in asyncio.all_tasks():
            t.print_stack(limit=12, file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)
    t = asyncio.create_task(dog())
    yield
    t.cancel()
