import asyncio, os, sys, traceback
import pytest
from callserver.calls import coordination, redis_registry
from tests.test_redis_registry import *  # noqa
from tests.test_redis_registry import test_coordinator_survives_redis_outage as orig, make_reg  # noqa

orig_renew = coordination.Coordinator.renew_once
async def renew_once(self):
    t = asyncio.current_task()
    before = t.cancelling()
    try:
        r = await orig_renew(self)
    except BaseException as e:
        raise
    if t.cancelling() and not before:
        print("SWALLOWED cancel in renew_once; returned", r, file=sys.stderr)
        traceback.print_stack(file=sys.stderr)
    return r
coordination.Coordinator.renew_once = renew_once

orig_ping = redis_registry.Redis.ping
async def ping(self, *a, **k):
    t = asyncio.current_task()
    try:
        return await orig_ping(self, *a, **k)
    except BaseException as e:
        print("PING EXC", type(e), e, "cancelling", t.cancelling(), file=sys.stderr)
        raise
    finally:
        if t.cancelling():
            print("PING returned with cancelling", t.cancelling(), file=sys.stderr)
redis_registry.Redis.ping = ping

@pytest.fixture(autouse=True)
async def watchdog():
    async def dog():
        await asyncio.sleep(6)
        print("HUNG", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)
    t = asyncio.create_task(dog())
    yield
    t.cancel()
