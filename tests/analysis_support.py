"""Helpers for the post-call analysis tests: a signed-event receiver and graph files."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from svix.webhooks import Webhook
from werkzeug import Request, Response

POSTCALL_SECRET = "whsec_" + base64.b64encode(b"analysis-test-secret-32-bytes!!!").decode()

GRAPH = """\
name: {name}
start: desk
agents:
  desk:
    instructions: You answer calls for a test business.
    tools: [end_call]
{extra}"""

ANALYSIS = """\
analysis:
  model: gpt-4.1-mini
  summary: true
  fields:
    reason: {{type: string, enum: [billing, other]}}
    callback_number: {{type: string, required: false}}
  success: The caller's question was answered.
  timeout: {timeout}
  max_attempts: {attempts}
"""


def write_graph(
    tmp_path: Path,
    *,
    name: str = "desk",
    analysis: bool = True,
    timeout: str = "5s",
    attempts: int = 3,
    extra: str = "",
) -> Path:
    """A one-agent graph file, with an ``analysis:`` block unless told otherwise."""
    body = (ANALYSIS.format(timeout=timeout, attempts=attempts) if analysis else "") + extra
    path = tmp_path / f"{name}.yaml"
    path.write_text(GRAPH.format(name=name, extra=body), encoding="utf-8")
    return path


class EventReceiver:
    """A post-call endpoint on pytest-httpserver that checks every signature the way a
    customer would and keeps the events in arrival order."""

    def __init__(self, httpserver: HTTPServer, path: str = "/hooks") -> None:
        self.url = httpserver.url_for(path)
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self._lock = threading.Lock()
        httpserver.expect_request(path, method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        Webhook(POSTCALL_SECRET).verify(body, headers)  # raises: the test sees a 500 retry
        with self._lock:
            self.received.append((json.loads(body), headers))
        return Response("ok")

    def of_type(self, event_type: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
        with self._lock:
            return [(e, h) for e, h in self.received if e["type"] == event_type]

    async def wait(
        self, event_type: str, count: int = 1, timeout: float = 10.0
    ) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """The first ``count`` events of a type (payload, headers), waiting for them."""
        deadline = time.monotonic() + timeout
        while len(found := self.of_type(event_type)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} {event_type} events within {timeout}s")
            await asyncio.sleep(0.01)
        return found[:count]


def postcall_settings(receiver: EventReceiver, tmp_path: Path) -> dict[str, Any]:
    """Settings overrides for callserver with post-call events (and so analysis) on."""
    return {
        "postcall_urls": (receiver.url,),
        "postcall_secret": POSTCALL_SECRET,
        "outbox_path": tmp_path / "outbox.sqlite3",
    }
