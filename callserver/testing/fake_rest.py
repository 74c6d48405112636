"""Call-control REST of the fake OpenAI: ``/v1/realtime/calls/{call_id}/{action}``.

Holds what the fake knows about calls (ringing -> accepted -> ended), records every request,
validates bodies strictly against the GA schemas, and plays scripted failures and delays.
Ending a call's websocket is the realtime side's job, reached through ``end_call``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callserver.testing import schemas
from callserver.testing.fake_calls import (
    FakeCall,
    RecordedRequest,
    ScriptedRule,
    error_body,
    take_rule,
)
from callserver.testing.webhook_sender import new_call_id

__all__ = [
    "CallControl",
    "action_endpoint",
    "authorized",
    "bad_json_error",
    "decided",
    "no_key_error",
    "read_json",
    "server_error",
]

REQUEST_SCHEMAS = {
    "accept": "RealtimeSessionCreateRequestGA",
    "reject": "RealtimeCallRejectRequest",
    "refer": "RealtimeCallReferRequest",
}
CONTROL_ACTIONS = ("accept", "reject", "refer", "hangup")
_BEARER = re.compile(r"^Bearer\s+\S+")

#: (call_id, reason, close_code or None to drop, delay seconds): end a call's websockets.
EndCall = Callable[[str, str, int | None, float], None]
Result = tuple[int, Any]
#: Handles one recorded control request: (record, parsed body, whether the JSON was bad).
ActionHandler = Callable[[RecordedRequest, Any, bool], Awaitable[Result]]


def authorized(headers: dict[str, str] | Any) -> bool:
    """Any non-empty bearer token passes, like a valid key; none gets the service's 401."""
    return bool(_BEARER.match(headers.get("authorization", "")))


def no_key_error() -> dict[str, Any]:
    return error_body(
        "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )


def server_error() -> dict[str, Any]:
    return error_body(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    )


def bad_json_error() -> dict[str, Any]:
    return error_body("We could not parse the JSON body of your request.")


def decided() -> Result:
    """The loser of an accept/reject race, on either API (HTTP status unconfirmed: 409)."""
    return 409, error_body(
        "A decision was already made for this session.", code="decision_already_made"
    )


def not_found(call_id: str | None) -> Result:
    return 404, error_body(f"Call {call_id} not found", code="call_not_found")


async def read_json(request: Request) -> tuple[Any, bool]:
    """The body as JSON (None when empty), and whether it failed to parse: a bad body is
    kept as text, since the fake records what callserver sent before refusing it."""
    raw = await request.body()
    try:
        return (json.loads(raw) if raw.strip() else None), False
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace"), True


async def action_endpoint(
    request: Request,
    *,
    id_param: str,
    requests: list[RecordedRequest],
    handle: ActionHandler,
    notify: Callable[[], Awaitable[None]],
) -> Response:
    """``POST .../{id}/{action}`` on either API: record the request before handling it (so
    a test sees it in flight), handle it, wake the waiters, answer (no body on None)."""
    body, bad_json = await read_json(request)
    record = RecordedRequest(
        method=request.method,
        path=request.url.path,
        call_id=request.path_params[id_param],
        action=request.path_params["action"],
        headers=dict(request.headers),
        json=body,
    )
    requests.append(record)
    status, payload = await handle(record, body, bad_json)
    record.status = status
    await notify()
    if payload is None:
        return Response(status_code=status)
    return JSONResponse(payload, status_code=status)


class CallControl:
    """Calls, recorded requests and scripted behaviour shared by REST and the websocket."""

    def __init__(
        self,
        *,
        end_call: EndCall,
        notify: Callable[[], Awaitable[None]],
        accept_any: bool = False,
        end_on_refer: bool = True,
        refer_end_delay: float = 0.05,
    ) -> None:
        self.accept_any = accept_any
        self.end_on_refer = end_on_refer
        self.refer_end_delay = refer_end_delay
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[RecordedRequest] = []
        self.rest_schema_errors: list[tuple[str, str, list[str]]] = []
        self.failures: list[ScriptedRule] = []
        self.delays: list[ScriptedRule] = []
        self._end_call = end_call
        self._notify = notify

    def add_call(self, call_id: str | None = None) -> str:
        call_id = call_id or new_call_id()
        self.calls[call_id] = FakeCall(call_id)
        return call_id

    def lookup(self, call_id: str | None) -> FakeCall | None:
        """The call, or None; with ``accept_any`` an unknown id becomes a ringing call."""
        if not call_id:
            return None
        if call_id not in self.calls and self.accept_any:
            self.add_call(call_id)
        return self.calls.get(call_id)

    async def scripted(self, action: str, call_id: str | None) -> Result | None:
        """Apply a scripted delay, then return a scripted failure if one is due."""
        if (rule := take_rule(self.delays, action, call_id)) is not None:
            await asyncio.sleep(rule.seconds)
        if (rule := take_rule(self.failures, action, call_id)) is not None:
            return rule.status, rule.body if rule.body is not None else server_error()
        return None

    # -- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        """``POST /v1/realtime/calls/{call_id}/{action}``."""
        return await action_endpoint(
            request,
            id_param="call_id",
            requests=self.requests,
            handle=self._handle,
            notify=self._notify,
        )

    async def precheck(self, record: RecordedRequest) -> Result | None:
        """What either API answers before it looks at the call: 401 without a key, 404 for
        an unknown action, then any scripted delay and failure; None to go on."""
        if not authorized(record.headers):
            return 401, no_key_error()
        if record.action not in CONTROL_ACTIONS:
            return 404, error_body(f"Invalid URL (POST {record.path})")
        return await self.scripted(record.action, record.call_id)

    async def _handle(self, record: RecordedRequest, body: Any, bad_json: bool) -> Result:
        if (refusal := await self.precheck(record)) is not None:
            return refusal
        action, call_id = record.action, record.call_id
        call = self.lookup(call_id)
        if call is None or call.state == "ended":
            return not_found(call_id)
        if bad_json:
            return 400, bad_json_error()
        if action in REQUEST_SCHEMAS and (body is not None or action != "reject"):
            errs = schemas.errors(REQUEST_SCHEMAS[action], body, strict=True)
            if errs:
                record.errors = errs
                self.rest_schema_errors.append((call.call_id, action, errs))
                return 400, error_body("Invalid request body: " + "; ".join(errs))
        if action == "accept":
            return self._accept(call, body)
        if action == "reject":
            return self._reject(call, body)
        if action == "refer":
            return self._refer(call, body)
        return self._hangup(call)

    def _accept(self, call: FakeCall, body: dict[str, Any]) -> Result:
        if call.state != "ringing":
            return 400, error_body(f"Call {call.call_id} has already been accepted")
        if not call.decision.take("realtime:accept"):
            return decided()
        call.state, call.session = "accepted", body
        return 200, None

    def _reject(self, call: FakeCall, body: dict[str, Any] | None) -> Result:
        if call.state != "ringing":
            return 400, error_body(f"Call {call.call_id} has already been accepted")
        if not call.decision.take("realtime:reject"):
            return decided()
        call.reject_status = (body or {}).get("status_code", 603)
        call.state, call.ended_by = "ended", "reject"
        return 200, None

    def _refer(self, call: FakeCall, body: dict[str, Any]) -> Result:
        if call.state != "accepted":
            return 400, error_body(f"Call {call.call_id} has not been accepted")
        call.refer_target = body["target_uri"]
        if self.end_on_refer:
            # A completed transfer takes the call away from the service shortly after.
            self._end_call(call.call_id, "refer", 1000, self.refer_end_delay)
        return 200, None

    def _hangup(self, call: FakeCall) -> Result:
        call.state, call.ended_by = "ended", "hangup"
        self._end_call(call.call_id, "hangup", 1000, 0.0)
        return 200, None
