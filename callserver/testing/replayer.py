"""The replay engine: one fake OpenAI and one callserver, and any number of cassettes
replayed through them concurrently (see :mod:`~callserver.testing.replay` for the command
and :mod:`~callserver.testing.replay_call` for the pacing of one call).

Tools are stubbed from the recordings unless asked to run for real, so a replay tests the
config (graphs, prompts, routing), not the tools' backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import httpx

from callserver.config_holder import ConfigHolder
from callserver.records.cassette_reader import Cassette, CassetteError, read_cassette
from callserver.testing.fake_live_session import new_session_id
from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.fake_realtime import Event, FakeConnection
from callserver.testing.harness import (
    TEST_WEBHOOK_SECRET,
    RunningServer,
    run_callserver,
    test_settings,
)
from callserver.testing.local_service import AsyncService
from callserver.testing.replay_call import (
    CALLER_END_REASONS,
    EXTERNAL_END_REASONS,
    CallReplay,
    Connection,
    Divergence,
)
from callserver.testing.replay_checks import check_end, check_rest
from callserver.testing.replay_tools import stub_tools
from callserver.testing.webhook_sender import new_call_id, send_webhook
from callserver.webhooks.openai import INCOMING_EVENTS

__all__ = ["DEFAULT_CONFIG", "ReplayResult", "Replayer"]

DEFAULT_CONFIG = "config"
"""The same default as ``CALLSERVER_CONFIG``: the bundled directory with its routes."""


@dataclasses.dataclass(slots=True)
class ReplayResult:
    """The outcome of one cassette: ``passed``, ``failed``, ``truncated`` or ``error``."""

    path: Path
    status: str
    divergences: list[Divergence] = dataclasses.field(default_factory=list)
    message: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def first_divergence(self) -> Divergence | None:
        return min(self.divergences, key=lambda d: d.t) if self.divergences else None

    def report(self) -> str:
        """``PASS path`` or ``FAIL path`` and the first divergence, indented."""
        label = {"passed": "PASS", "failed": "FAIL", "truncated": "TRUNCATED"}.get(
            self.status, "ERROR"
        )
        lines = [f"{label:<9} {self.path}  ({self.seconds:.2f}s)"]
        if self.message:
            lines.append(f"    {self.message}")
        first = self.first_divergence
        if first is not None:
            lines.extend(f"    {line}" for line in str(first).splitlines())
        return "\n".join(lines)


class _ReplayFake(FakeOpenAI):
    """The fake OpenAI with no canned answers: every server event comes from a cassette."""

    def __init__(self) -> None:
        super().__init__(auto_respond=False)
        self.auto_replies = {}
        self.replays: dict[str, CallReplay] = {}
        self.live.auto_reply = False
        self.live.on_client_event = self._on_live_event

    def _on_live_event(self, session_id: str, event: Event) -> None:
        replay = self.replays.get(session_id)
        if replay is not None:
            replay.on_client_event(event)

    def _on_client_event(self, conn: FakeConnection, event: Event, errors: list[str]) -> None:
        super()._on_client_event(conn, event, errors)
        replay = self.replays.get(conn.call_id)
        if replay is not None:
            replay.on_client_event(event)


class Replayer(AsyncService):
    """One fake OpenAI + one callserver on ``config``; replays cassettes through them.

    ``execute`` names tools that run for real; every other tool (except the built-in call
    tools) answers with its recorded output. ``execute_all`` runs every tool for real.
    """

    def __init__(
        self,
        config: Path | str = DEFAULT_CONFIG,
        *,
        execute: Collection[str] = (),
        execute_all: bool = False,
        timeout: float = 5.0,
        settle: float = 0.05,
        concurrency: int = 32,
    ) -> None:
        self.config_path = Path(config)
        self._execute: Collection[str] | None = None if execute_all else frozenset(execute)
        self.timeout = timeout
        self.settle = settle
        self._slots = asyncio.Semaphore(concurrency)
        self.fake = _ReplayFake()
        self._client: httpx.AsyncClient | None = None
        self._server_cm: Any = None
        self.server: RunningServer | None = None

    async def start(self) -> None:
        """Start the fake, then callserver on the config with its tools stubbed."""
        holder = ConfigHolder.load(self.config_path)
        config = stub_tools(holder.current, self._execute, self._answer)
        await self.fake.start()
        settings = test_settings(
            self.fake.base_url,
            self.config_path,
            max_concurrent_calls=100_000,
            ring_deadline_s=self.timeout,
            drain_timeout_s=0.5,
        )
        self._server_cm = run_callserver(settings, config=ConfigHolder(self.config_path, config))
        try:
            self.server = await self._server_cm.__aenter__()
        except BaseException:
            await self.fake.stop()
            raise
        # One client for every webhook: a client per call costs ~25 ms of TLS set-up alone.
        self._client = httpx.AsyncClient(timeout=self.timeout)

    async def stop(self) -> None:
        """Stop callserver (with its drain), then the fake, whatever fails first."""
        try:
            if self._client is not None:
                await self._client.aclose()
            if self._server_cm is not None:
                await self._server_cm.__aexit__(None, None, None)
        finally:
            await self.fake.stop()

    async def _answer(self, call_id: str, name: str, arguments: str) -> str:
        replay = self.fake.replays.get(call_id)
        if replay is None:
            return f"[replay: no cassette for call {call_id}]"
        return await replay.tool_output(name, arguments)

    # -- replaying -------------------------------------------------------------------------------

    async def replay_all(self, sources: Iterable[Path | str | Cassette]) -> list[ReplayResult]:
        """Replay several cassettes concurrently; results in the order given."""
        return list(await asyncio.gather(*(self.replay(source) for source in sources)))

    async def replay(self, source: Path | str | Cassette) -> ReplayResult:
        """Replay one cassette (a path or an already read :class:`Cassette`)."""
        started = time.perf_counter()
        path = source.path if isinstance(source, Cassette) else Path(source)
        try:
            cassette = source if isinstance(source, Cassette) else read_cassette(source)
        except CassetteError as exc:
            return ReplayResult(path, "error", message=str(exc))
        if cassette.truncated:
            return ReplayResult(
                path,
                "truncated",
                message=f"cassette is truncated: {cassette.truncation_reason()}; not replayed",
            )
        async with self._slots:
            result = await self._replay(cassette)
        result.seconds = time.perf_counter() - started
        return result

    async def _replay(self, cassette: Cassette) -> ReplayResult:
        assert self.server is not None, "use Replayer as an async context manager"
        webhook = cassette.first("webhook")
        if webhook is None:
            return ReplayResult(cassette.path, "error", message="cassette has no webhook line")
        engine = INCOMING_EVENTS.get(str(webhook.data["body"].get("type")), ("realtime",))[0]
        call_id = new_session_id() if engine == "live" else new_call_id()
        replay = CallReplay(
            cassette,
            call_id,
            timeout=self.timeout,
            settle=self.settle,
            start_agent=self._start_agent(cassette.graph),
        )
        self.fake.replays[call_id] = replay
        try:
            await self._run_call(replay, webhook.data["body"])
        except Exception as exc:  # a harness failure, not a divergence
            logging.getLogger(__name__).exception("replay of %s failed", cassette.path)
            return ReplayResult(cassette.path, "error", message=f"{type(exc).__name__}: {exc}")
        finally:
            self.fake.replays.pop(call_id, None)
        status = "failed" if replay.failed else "passed"
        return ReplayResult(cassette.path, status, list(replay.divergences))

    def _start_agent(self, graph: str | None) -> str | None:
        """The name of the agent a graph starts with, for cassettes that name none."""
        assert self.server is not None
        spec = self.server.services.config.current.graphs.get(graph or "")
        plan = spec.agents.get(spec.start) if spec is not None else None
        return plan.name if plan is not None else None

    async def _run_call(self, replay: CallReplay, recorded_body: Any) -> None:
        assert self.server is not None
        call_id, fake, manager = replay.call_id, self.fake, self.server.services.manager
        body = json.loads(json.dumps(recorded_body).replace(replay.cassette.call_id, call_id))
        for entry in replay.cassette.of("rest"):
            status = entry.data.get("status")
            if isinstance(status, int) and status >= 300:
                fake.fail(str(entry.data["action"]), status=status, call_id=call_id)
        live = call_id.startswith("live_")
        if live:
            fake.live.add_session(call_id)
        else:
            fake.add_call(call_id)
        response = await send_webhook(
            self.server.webhook_url, TEST_WEBHOOK_SECRET, body, client=self._client
        )
        if response.status_code != 200:
            replay.diverge(0.0, 0, f"callserver answered the webhook with {response.status_code}")
            return
        taken = response.json().get("status")
        if taken != "started":
            why = "routed to a graph on the other engine" if taken == "other_engine" else taken
            replay.diverge(0.0, 0, f"callserver did not take the call: {why}")
            return
        if replay.ws:
            try:
                conn: Connection = await (
                    fake.live.wait_attached(call_id, self.timeout)
                    if live
                    else fake.wait_connected(call_id, self.timeout)
                )
            except AssertionError:
                replay.diverge(0.0, 0, "callserver never opened the websocket")
            else:

                async def reconnected(index: int) -> Connection:
                    if live:
                        return await fake.live.wait_attached(call_id, self.timeout, index=index)
                    return await fake.wait_connected(call_id, self.timeout, index=index)

                await replay.drive(conn, reconnected)
                await self._end_like_recording(replay, conn)
        try:
            await manager.wait_ended(call_id, self.timeout)
        except TimeoutError:
            replay.diverge(1e9, 0, f"the call did not end within {self.timeout:g}s")
            await manager.end(call_id, "replay_aborted", hangup=True)
        record = await manager.registry.get(call_id)
        recorded_graph = replay.cassette.graph
        if record is not None and recorded_graph and record.graph != recorded_graph:
            replay.diverge(
                0.0, 0, f"routed to graph {record.graph!r}; the recording used {recorded_graph!r}"
            )
        if not replay.failed:
            check_end(replay, record.end_reason if record else None)
        check_rest(
            replay,
            [
                (r.action, r.json)
                for r in fake.requests_for(call_id)
                if r.action not in ("realtime", "attach", "content")
            ],
        )

    async def _end_like_recording(self, replay: CallReplay, conn: Connection) -> None:
        """End the call the way the recorded one ended (unless callserver must do it)."""
        assert self.server is not None
        manager = self.server.services.manager
        reason = replay.end_reason
        if replay.failed or reason is None or reason in CALLER_END_REASONS:
            await self._caller_hangs_up(replay.call_id)
        elif reason in EXTERNAL_END_REASONS:
            await manager.end(replay.call_id, reason, hangup=True)
        else:
            try:
                await manager.wait_ended(replay.call_id, self.timeout)
            except TimeoutError:
                end = replay.cassette.first("end")
                replay.diverge(
                    end.t if end else 0.0,
                    0,
                    f"expected callserver to end the call ({reason}); it did not",
                )
                await self._caller_hangs_up(replay.call_id)

    async def _caller_hangs_up(self, call_id: str) -> None:
        """End the call at the fake (a dropped socket alone is not a hangup: callserver would
        reattach); callserver then finds it gone."""
        if call_id.startswith("live_"):
            await self.fake.live.caller_hangs_up(call_id)
        else:
            await self.fake.caller_hangs_up(call_id)
