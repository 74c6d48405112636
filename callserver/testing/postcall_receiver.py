"""A local receiver of callserver's post-call events, checking signatures like a backend.

Point ``CALLSERVER_POSTCALL_URLS`` at ``receiver.url``: every POST is verified against the
Standard Webhooks signature with the shared secret (a bad one gets 401, and callserver
retries it), then kept in arrival order. Runs in the current event loop, like the fakes::

    async with PostCallReceiver(secret) as receiver:
        ...  # run callserver with postcall_urls=(receiver.url,)
        [(event, headers)] = await receiver.wait("call.analyzed")
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from svix.webhooks import Webhook, WebhookVerificationError

from callserver.testing.fake_server import InLoopServer
from callserver.testing.local_service import LocalService

__all__ = ["PostCallReceiver"]

Received = tuple[dict[str, Any], dict[str, str]]


class PostCallReceiver(LocalService):
    """Signed post-call events received on ``url``: ``events`` (payload, headers) in order,
    ``rejected`` counts requests whose signature did not verify."""

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._verifier = Webhook(secret)
        self.events: list[Received] = []
        self.rejected = 0
        self._changed = asyncio.Condition()
        app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])
        self._server = InLoopServer(app, host, port)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}/hooks"

    def of_type(self, event_type: str) -> list[Received]:
        return [(e, h) for e, h in self.events if e.get("type") == event_type]

    async def wait(self, event_type: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` events of ``event_type``, waiting up to ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while len(self.of_type(event_type)) < count:
                    await self._changed.wait()
        except TimeoutError:
            got = len(self.of_type(event_type))
            raise AssertionError(f"{got} {event_type} events within {timeout}s") from None
        return self.of_type(event_type)[:count]

    async def _receive(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self._verifier.verify(body, headers)
            event = json.loads(body)
        except (WebhookVerificationError, ValueError):
            self.rejected += 1
            return PlainTextResponse("bad signature", status_code=401)
        async with self._changed:
            self.events.append((event, headers))
            self._changed.notify_all()
        return PlainTextResponse("ok")
