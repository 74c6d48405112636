"""``POST /admin/calls``: place one outbound call (the admin bearer token, like all /admin).

Validates everything first (E.164 ``to``/``from``, the graph, its declared variables, the
dialer; the do-not-call list; room under the outbound share of the cap), so a bad request
dials nothing and gets a 4xx naming the field. Then the call is placed and the answer waits
for the dialer's one request to be answered: 201 with the call (``status`` dialing or
ringing), or 502 when the dialer refused or its outcome is unknown. ``GET /admin/calls/{id}``
then follows it.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callserver.admin import require_admin
from callserver.calls.outbound import OutboundRefused, view
from callserver.outbound.request import RequestError, parse_call_request
from callserver.outbound.service import Blocked, OutboundService
from callserver.webhooks.body import read_capped_body
from callserver.webhooks.errors import WebhookError

log = logging.getLogger(__name__)

PLACED_WAIT_MARGIN_S = 5.0
MAX_BODY_BYTES = 16 * 1024 * 1024
"""A campaign's rows come in one body: room for about 100,000 rows."""


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def outbound_service(request: Request) -> OutboundService | None:
    return getattr(request.app.state.services, "outbound", None)


async def read_json(request: Request) -> object:
    """The JSON body, or RequestError naming the body."""
    try:
        raw = await read_capped_body(request, MAX_BODY_BYTES)
    except WebhookError as exc:
        raise RequestError("body", exc.message) from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("body", "must be JSON") from None


async def place_call(request: Request) -> JSONResponse:
    if (denied := require_admin(request)) is not None:
        return denied
    service = outbound_service(request)
    if service is None:
        return _error(404, "outbound calls are not available on this server")
    try:
        body = await read_json(request)
        call = parse_call_request(body, service.graphs)
        dialed = await service.place(call)
    except RequestError as exc:
        return JSONResponse(exc.as_json(), status_code=400)
    except Blocked:
        return _error(409, "the number is on the do-not-call list: not dialed", field="to")
    except OutboundRefused as exc:
        return JSONResponse(
            {"error": f"not dialed: {exc.reason} (try again later)", "reason": exc.reason},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    timeout = service.create_timeout_s + PLACED_WAIT_MARGIN_S
    try:
        await asyncio.wait_for(dialed.plan.placed.wait(), timeout)
    except TimeoutError:
        pass
    record = dialed.record
    body = {**view(record), "state": record.state.value}
    outcome = (record.outbound or {}).get("outcome")
    if outcome in ("rejected", "failed", "unknown"):
        return JSONResponse(
            {"error": (record.outbound or {}).get("error") or outcome, "call": body},
            status_code=502,
        )
    return JSONResponse(body, status_code=201)


ROUTES = [Route("/admin/calls", place_call, methods=["POST"])]
