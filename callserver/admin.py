"""The admin API under ``/admin``: list, inspect, hang up and transfer calls; reload; drain.

Off unless ``CALLSERVER_ADMIN_TOKEN`` is set (then every route answers 404, as if absent).
Every request needs ``Authorization: Bearer <token>``, compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callserver.calls.outbound import view as outbound_view
from callserver.calls.records import CallRecord, CallState
from callserver.engines.errors import ControlError

log = logging.getLogger(__name__)

_TARGET_RE = re.compile(r"^(tel:\+?[0-9*#]{2,32}|sips?:[^\s<>\"]{3,256})$")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _authorized(request: Request) -> JSONResponse | None:
    """None when the request may proceed, else the response to send."""
    token = request.app.state.services.settings.admin_token
    if token is None:
        return _error(404, "not found")
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected):
        return _error(401, "missing or wrong admin token")
    return None


require_admin = _authorized
"""For the other admin route modules (outbound calls, campaigns)."""


def _view(record: CallRecord) -> dict[str, object]:
    summary = record.summary()
    return {
        "call_id": summary["call_id"],
        "graph": summary["graph"],
        "route": summary["route"],
        "current_agent": summary["current_agent"],
        "state": summary["state"],
        "started_at": summary["started_at"],
        "duration_s": summary["duration_s"],
        "end_reason": summary["end_reason"],
    }


async def list_calls(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    manager = request.app.state.services.manager
    calls = [_view(r) for r in await manager.registry.live_calls()]
    return JSONResponse({"calls": calls, "draining": manager.draining})


async def show_call(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    record = await request.app.state.services.manager.registry.get(request.path_params["call_id"])
    if record is None:
        return _error(404, "no such call")
    if record.outbound is not None:  # an outbound call: its progress and outcome first
        return JSONResponse({**outbound_view(record), **record.summary()})
    return JSONResponse(record.summary())


async def hangup_call(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    call_id = request.path_params["call_id"]
    manager = request.app.state.services.manager
    record = await manager.registry.get(call_id)
    if record is None:
        return _error(404, "no such call")
    if not record.live:
        return _error(409, f"call is already {record.state.value}")
    await manager.end(call_id, "admin_hangup", hangup=True)
    log.info("call hung up by admin", extra={"call_id": call_id})
    return JSONResponse({"status": "ended", "call_id": call_id})


async def transfer_call(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    call_id = request.path_params["call_id"]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, 'body must be JSON: {"target_uri": "tel:+1..."}')
    target = body.get("target_uri") if isinstance(body, dict) else None
    if not isinstance(target, str) or not _TARGET_RE.match(target):
        return _error(400, "target_uri must be a tel: or sip: URI")
    manager = request.app.state.services.manager
    record = await manager.registry.get(call_id)
    if record is None:
        return _error(404, "no such call")
    if record.state is not CallState.ACTIVE:
        return _error(409, f"call is {record.state.value}, not active")
    try:
        await manager.transfer(call_id, target)
    except ControlError as exc:
        return _error(502, f"transfer failed: {exc.detail}")
    except LookupError:
        return _error(409, "call is no longer live on any instance")
    return JSONResponse({"status": "transferring", "call_id": call_id})


async def reload_config(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    ok, detail = await request.app.state.services.config.reload()
    if not ok:
        return JSONResponse(
            {"error": "invalid config, old config kept", "details": detail}, status_code=422
        )
    return JSONResponse({"status": "reloaded", "config_hash": detail})


async def start_drain(request: Request) -> JSONResponse:
    if (denied := _authorized(request)) is not None:
        return denied
    services = request.app.state.services
    services.manager.start_drain(services.settings.drain_timeout_s)
    return JSONResponse({"status": "draining", "timeout_s": services.settings.drain_timeout_s})


ROUTES = [
    Route("/admin/calls", list_calls, methods=["GET"]),
    Route("/admin/calls/{call_id}", show_call, methods=["GET"]),
    Route("/admin/calls/{call_id}/hangup", hangup_call, methods=["POST"]),
    Route("/admin/calls/{call_id}/transfer", transfer_call, methods=["POST"]),
    Route("/admin/reload", reload_config, methods=["POST"]),
    Route("/admin/drain", start_drain, methods=["POST"]),
]
