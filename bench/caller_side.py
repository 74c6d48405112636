"""The caller side of bench/sidebyside.py: one run against one server under test.

One process holds the fake OpenAI (``FakeOpenAI``) *and* the webhook sender, so "webhook
sent" and "accept received" are read on one clock. It starts the server under test in its
own process (the example-style ``bench/sip_example.py`` or ``callserver serve``), reads
that process's CPU and RSS from /proc, and rings it open-loop: webhooks leave at fixed
times from a precomputed schedule (the same for every server), whether or not earlier ones
were answered. Callers stay on the line until every call is attached, then all hang up at
once (the fake drops each websocket, as a real hang-up looks) and the clock runs until the
server has closed its side of every control websocket (read from /proc/net/tcp).

Prints one JSON object (the figures of the run) as its last line::

    python bench/caller_side.py --server example --calls 200 --rate 40
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from procstat import cpu_s, open_local_ports, raise_nofile, rss_kib

from callserver.testing import fake_realtime, schemas
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import DEFAULT_AUTO_REPLIES, Event, FakeConnection
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from callserver.testing.webhook_sender import incoming_call_event, sign

SERVERS = ("example", "callserver", "callserver-rec")
DEFAULT_CONFIG = ROOT / "config" / "agents.yaml"
SETTLE_S = 1.0
"""After the last call attached: let greetings and session updates finish before reading
CPU and RSS, so a slow tail is not cut off in one server and counted in the other."""


def lighten_fake() -> None:
    """Make the caller side cheap. Skip the fake's strict JSON-schema checks of what the
    server sends (a few ms of the caller side's CPU per call): they are conformance checks
    for tests; OpenAI runs on other machines, so here they would only take CPU from the
    server under test on the 2 shared cores. ``--strict`` keeps them."""
    fake_realtime.client_event_errors = lambda event: []
    schemas.errors = lambda *args, **kwargs: []
    # The fake keeps every event it sent and received: with 2,000 calls the cyclic GC's
    # full passes over that stall the caller side for hundreds of ms, and the stall would
    # be counted against the server. A run is short; its garbage can wait for the exit.
    gc.disable()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``nan`` for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Tracker:
    """What the fake saw, per call, with timestamps: hooked into its auto replies."""

    attached: dict[str, float] = field(default_factory=dict)
    """call id -> when its first ``session.update`` arrived (the session is up)."""
    conns: dict[str, FakeConnection] = field(default_factory=dict)
    outputs: dict[str, float] = field(default_factory=dict)
    """function-call id -> when its ``function_call_output`` arrived."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, fake: FakeOpenAI) -> None:
        session_update = DEFAULT_AUTO_REPLIES["session.update"]
        item_create = DEFAULT_AUTO_REPLIES["conversation.item.create"]
        assert session_update is not None and item_create is not None

        def on_session_update(conn: FakeConnection, event: Event) -> Any:
            if conn.call_id not in self.attached:
                self.attached[conn.call_id] = time.time()
                self.conns[conn.call_id] = conn
                self.changed.set()
            return session_update(conn, event)

        def on_item_create(conn: FakeConnection, event: Event) -> Any:
            item = event.get("item") or {}
            if item.get("type") == "function_call_output":
                self.outputs[str(item.get("call_id"))] = time.time()
            return item_create(conn, event)

        fake.auto_replies["session.update"] = on_session_update
        fake.auto_replies["conversation.item.create"] = on_item_create

    async def wait_attached(self, call_ids: list[str], timeout: float) -> int:
        """Wait until every call is attached; how many were not within ``timeout``."""
        deadline = time.monotonic() + timeout
        pending = set(call_ids)
        while True:
            pending -= self.attached.keys()
            if not (missing := len(pending)):
                return 0
            if time.monotonic() > deadline:
                logging.warning("%d of %d calls never attached", missing, len(call_ids))
                return missing
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 1.0)
            except TimeoutError:
                pass


@dataclass
class Server:
    """The server under test, in its own process."""

    process: asyncio.subprocess.Process
    webhook_url: str
    ready_url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def server_command(kind: str, port: int) -> tuple[list[str], str, str]:
    """argv, webhook path and readiness path of a server kind."""
    if kind == "example":
        argv = [sys.executable, str(BENCH / "sip_example.py"), "--port", str(port)]
        return argv, "/openai/webhook", "/"
    argv = [sys.executable, "-m", "callserver.cli", "serve", "--host", "127.0.0.1"]
    return [*argv, "--port", str(port)], "/webhooks/openai", "/readyz"


def server_env(kind: str, fake: FakeOpenAI, workdir: Path, config: Path) -> dict[str, str]:
    """The environment each server is started with: the same key, secret and fake."""
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "OPENAI_BASE_URL": fake.base_url,
        # No internet here: the SDK's trace exporter would retry against api.openai.com.
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    if kind == "example":
        env["SIP_EXAMPLE_WS_URL"] = fake.ws_url
        return env
    env |= {
        "CALLSERVER_CONFIG": str(config),
        "CALLSERVER_MAX_CALLS": "10000",
        "CALLSERVER_RECORDING": "on" if kind == "callserver-rec" else "off",
        "CALLSERVER_RECORDING_DIR": str(workdir / "recordings"),
        "CALLSERVER_OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "CALLSERVER_CAMPAIGN_DB": str(workdir / "campaigns.sqlite3"),
    }
    return env


def _server_log() -> IO[bytes]:
    """Where the server's output goes: BENCH_SERVER_LOG=path keeps it (for debugging)."""
    return open(os.environ.get("BENCH_SERVER_LOG") or os.devnull, "ab")


@asynccontextmanager
async def running_server(
    kind: str, fake: FakeOpenAI, config: Path = DEFAULT_CONFIG
) -> AsyncIterator[Server]:
    """Start a server under test, wait until it answers, stop it on exit."""
    port = free_port()
    argv, hook_path, ready_path = server_command(kind, port)
    with tempfile.TemporaryDirectory(prefix="sidebyside-") as tmp, _server_log() as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=server_env(kind, fake, Path(tmp), config),
            cwd=tmp,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        server = Server(process, base + hook_path, base + ready_path)
        try:
            await _wait_ready(server)
            yield server
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                raise RuntimeError(f"server exited during start-up ({server.process.returncode})")
            try:
                if (await client.get(server.ready_url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{server.ready_url} not ready after {timeout}s")


def signed_webhooks(fake: FakeOpenAI, n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """Ringing calls registered in the fake, with their signed webhooks, made before the
    clock starts so signing costs the sender nothing during the run."""
    out = []
    for _ in range(n):
        call_id = fake.add_call()
        body = json.dumps(incoming_call_event(call_id)).encode()
        headers = {"content-type": "application/json", **sign(TEST_WEBHOOK_SECRET, body)}
        out.append((call_id, body, headers))
    return out


async def ring_open_loop(
    client: httpx.AsyncClient,
    url: str,
    webhooks: list[tuple[str, bytes, dict[str, str]]],
    rate: float,
) -> tuple[dict[str, float], list[float], int]:
    """POST each webhook at ``i / rate`` s from now, not waiting for earlier answers.

    Returns when each was sent (call id -> time.time()), how late each left, and how many
    deliveries had to be retried."""
    sent: dict[str, float] = {}
    lags: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    retried: list[str] = []

    async def post(call_id: str, body: bytes, headers: dict[str, str]) -> None:
        sent[call_id] = time.time()
        # A reused keep-alive connection the server has just closed fails at once; OpenAI
        # redelivers, so do the same (the latency still counts from the first send).
        for attempt in range(3):
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                retried.append(call_id)
                logging.warning("webhook %s (attempt %d): %r", call_id, attempt + 1, exc)
                continue
            if response.status_code != 200:
                logging.warning("webhook %s: %s", call_id, response.status_code)
            return

    start = time.monotonic()
    for i, (call_id, body, headers) in enumerate(webhooks):
        due = start + i / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - due))
        tasks.append(asyncio.create_task(post(call_id, body, headers)))
    await asyncio.gather(*tasks)
    return sent, lags, len(retried)


def accept_latencies(fake: FakeOpenAI, sent: dict[str, float]) -> list[float]:
    """Seconds from webhook sent to the fake receiving the call's first accept."""
    accepted: dict[str, float] = {}
    for request in fake.requests:
        if request.action == "accept" and request.call_id in sent:
            accepted.setdefault(request.call_id, request.at)
    return [accepted[c] - t for c, t in sent.items() if c in accepted]


async def hang_up_all(fake: FakeOpenAI, tracker: Tracker, timeout: float = 60.0) -> float:
    """Every caller hangs up at once; seconds until the server closed every websocket."""
    ports = {conn._ws.client.port for conn in tracker.conns.values() if conn._ws.client}
    started = time.monotonic()
    await asyncio.gather(*(fake.caller_hangs_up(c) for c in list(tracker.conns)))
    while open_local_ports(fake.port, ports):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"server sockets still open after {timeout}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def run_setup(kind: str, calls: int, rate: float, warmup: int) -> dict[str, Any]:
    """One run: RSS at start, warm-up, ``calls`` open-loop arrivals, hang-up."""
    tracker = Tracker()
    async with FakeOpenAI() as fake:
        tracker.install(fake)
        limits = httpx.Limits(max_connections=4000, max_keepalive_connections=200)
        async with (
            running_server(kind, fake) as server,
            httpx.AsyncClient(limits=limits, timeout=60) as client,
        ):
            await asyncio.sleep(0.5)
            rss_start = rss_kib(server.pid)
            warm = signed_webhooks(fake, warmup)
            await ring_open_loop(client, server.webhook_url, warm, rate)
            await tracker.wait_attached([c for c, _, _ in warm], 60)
            await asyncio.sleep(SETTLE_S)
            rss_warm, cpu_before = rss_kib(server.pid), cpu_s(server.pid)
            own_before = cpu_s(os.getpid())
            hooks = signed_webhooks(fake, calls)
            sent, lags, retries = await ring_open_loop(client, server.webhook_url, hooks, rate)
            missing = await tracker.wait_attached(list(sent), 120)
            await asyncio.sleep(SETTLE_S)
            cpu_after, rss_after = cpu_s(server.pid), rss_kib(server.pid)
            own_cpu = cpu_s(os.getpid()) - own_before
            latencies = accept_latencies(fake, sent)
            hangup_s = await hang_up_all(fake, tracker)
        # Only with --strict: what the server sent that fails OpenAI's schemas.
        schema_errors = len(fake.client_schema_errors) + len(fake.rest_schema_errors)
    return {
        "server": kind,
        "calls": calls,
        "rate": rate,
        "accepted": len(latencies),
        "not_attached": missing,
        "accept_p50_ms": pct(latencies, 50) * 1000,
        "accept_p99_ms": pct(latencies, 99) * 1000,
        "setup_cpu_ms": (cpu_after - cpu_before) * 1000 / calls,
        "kib_per_call": (rss_after - rss_warm) / calls,
        "rss_start_mib": rss_start / 1024,
        "rss_after_mib": rss_after / 1024,
        "hangup_s": hangup_s,
        "send_lag_p99_ms": pct(lags, 99) * 1000,
        "webhook_retries": retries,
        "caller_side_cpu_ms": own_cpu * 1000 / calls,
        "schema_errors": schema_errors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=SERVERS, required=True)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=40.0, help="webhooks per second")
    parser.add_argument("--warmup", type=int, default=20, help="calls not counted")
    parser.add_argument("--strict", action="store_true", help="keep the fake's schema checks")
    args = parser.parse_args(argv)
    raise_nofile()
    if not args.strict:
        lighten_fake()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("callserver.testing").setLevel(logging.ERROR)
    result = asyncio.run(run_setup(args.server, args.calls, args.rate, args.warmup))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
