"""Several real ``callserver serve`` processes sharing one Redis and one fake OpenAI."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.process import start_serve
from tests.conftest import ROOT
from tests.e2e import wait_for

LEASE_S = 1.0
ADMIN_TOKEN = "admin-token-for-redis-tests"
TWILIO_TOKEN = "twilio-token-for-redis-tests"
PUBLIC = "https://calls.example.com"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class Instance:
    """One callserver process; its log goes to a file (a pipe nobody reads would block it)."""

    def __init__(self, name: str, port: int, proc: asyncio.subprocess.Process, log: Path):
        self.name, self.port, self.proc, self.log = name, port, proc, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/openai"


class Fleet:
    """Start, reach and stop instances; every process is ended at teardown."""

    def __init__(self, fake: FakeOpenAI, redis_url: str, prefix: str, logs: Path) -> None:
        self.fake, self.redis_url, self.prefix, self.logs = fake, redis_url, prefix, logs
        self.instances: list[Instance] = []
        self.http = httpx.AsyncClient(timeout=5)
        self.extra_env: dict[str, str] = {}
        """Settings for every instance started from now on; ``{name}`` is its name."""

    def env(self, name: str, redis_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CALLSERVER_"))}
        env.update(
            OPENAI_API_KEY="sk-test-redis",
            OPENAI_BASE_URL=self.fake.base_url,
            OPENAI_WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
            OPENAI_PROJECT_ID="proj_test123",
            CALLSERVER_CONFIG=str(ROOT / "config" / "agents.yaml"),
            CALLSERVER_DRAIN_TIMEOUT="1",
            CALLSERVER_LOG_FORMAT="json",
            CALLSERVER_ADMIN_TOKEN=ADMIN_TOKEN,
            CALLSERVER_PUBLIC_URL=PUBLIC,
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            REDIS_URL=redis_url,
            CALLSERVER_REDIS_PREFIX=self.prefix,
            CALLSERVER_REDIS_LEASE=str(LEASE_S),
            CALLSERVER_INSTANCE_ID=name,
        )
        env.update({key: value.format(name=name) for key, value in self.extra_env.items()})
        env.update(extra)
        return env

    async def start(self, count: int, *, redis_url: str | None = None, **env: str) -> None:
        names = [chr(ord("a") + len(self.instances) + n) for n in range(count)]
        started = await asyncio.gather(
            *(self._start_one(name, redis_url or self.redis_url, env) for name in names)
        )
        self.instances.extend(started)
        await asyncio.gather(*(self.wait_ready(i) for i in started))

    async def _start_one(self, name: str, redis_url: str, env: dict[str, str]) -> Instance:
        port = free_port()
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = await start_serve(self.env(name, redis_url, **env), port, cwd=ROOT, output=out)
        return Instance(name, port, proc, log)

    async def readyz(self, instance: Instance) -> int:
        if instance.proc.returncode is not None:
            raise AssertionError(f"{instance.name} exited: {instance.log.read_text()[-2000:]}")
        try:
            return (await self.http.get(instance.url + "/readyz")).status_code
        except httpx.HTTPError:
            return 0

    async def wait_ready(self, instance: Instance, status: int = 200, within: float = 20) -> None:
        async def check() -> bool:
            return await self.readyz(instance) == status

        await wait_for(check, timeout=within, what=f"{instance.name} readyz {status}")

    async def place_call(self, instance: Instance, **kwargs: Any) -> str:
        call_id, response = await self.fake.send_incoming_call(
            instance.webhook_url, TEST_WEBHOOK_SECRET, client=self.http, **kwargs
        )
        assert response.status_code == 200, response.text
        await self.fake.wait_connected(call_id)
        return call_id

    async def admin(self, instance: Instance, method: str, path: str) -> httpx.Response:
        return await self.http.request(method, instance.url + path, headers=AUTH)

    async def wait_idle(self) -> None:
        """No live call on any instance (as the shared registry sees it)."""
        alive = [i for i in self.instances if i.proc.returncode is None]

        async def idle() -> bool:
            return (await self.admin(alive[0], "GET", "/admin/calls")).json()["calls"] == []

        await wait_for(idle, what="no live calls")

    async def aclose(self) -> None:
        for instance in self.instances:
            if instance.proc.returncode is None:
                instance.proc.send_signal(signal.SIGTERM)
        for instance in self.instances:
            try:
                await asyncio.wait_for(instance.proc.wait(), 8)
            except TimeoutError:
                instance.proc.kill()
                await instance.proc.wait()
        await self.http.aclose()
