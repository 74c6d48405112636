"""The campaigns admin API (the admin bearer token, like all of /admin).

- ``POST /admin/campaigns``: create and start one; 400 with every row/column error and
  nothing stored or dialed when anything is wrong.
- ``GET /admin/campaigns``, ``GET /admin/campaigns/{id}``: progress (counts by row status
  and outcome, attempts, in flight).
- ``POST /admin/campaigns/{id}/pause|resume|cancel``: 409 when the state does not allow it.
  Cancelling stops dialing; calls in progress finish normally.
- ``GET /admin/campaigns/{id}/results?format=jsonl|csv``: per-row results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callserver.admin import require_admin
from callserver.admin_calls import outbound_service, read_json
from callserver.calls.registry import RegistryUnavailable
from callserver.outbound.campaigns.service import Campaigns, export_rows
from callserver.outbound.campaigns.spec import CampaignError
from callserver.outbound.campaigns.store import TransitionError
from callserver.outbound.request import RequestError

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _campaigns(request: Request) -> Campaigns | JSONResponse:
    if (denied := require_admin(request)) is not None:
        return denied
    service = outbound_service(request)
    if service is None or service.campaigns is None:
        return _error(404, "campaigns are not available on this server")
    return service.campaigns


async def create_campaign(request: Request) -> JSONResponse:
    campaigns = _campaigns(request)
    if isinstance(campaigns, JSONResponse):
        return campaigns
    try:
        info = await campaigns.create(await read_json(request))
    except RequestError as exc:
        return JSONResponse(exc.as_json(), status_code=400)
    except CampaignError as exc:
        return JSONResponse(exc.as_json(), status_code=400)
    except RegistryUnavailable:
        return _error(503, "campaign store unavailable: nothing stored, nothing dialed")
    return JSONResponse(info.as_json(), status_code=201)


async def list_campaigns(request: Request) -> JSONResponse:
    campaigns = _campaigns(request)
    if isinstance(campaigns, JSONResponse):
        return campaigns
    try:
        found = await campaigns.list()
    except RegistryUnavailable:
        return _error(503, "campaign store unavailable")
    return JSONResponse({"campaigns": [info.as_json() for info in found]})


async def _answer(request: Request, act: Callable[[Campaigns], Awaitable[Any]]) -> JSONResponse:
    """One campaign's view after ``act``: 404 unknown, 409 a refused state change, 503 the
    store down."""
    campaigns = _campaigns(request)
    if isinstance(campaigns, JSONResponse):
        return campaigns
    try:
        info = await act(campaigns)
    except TransitionError as exc:
        return _error(409, str(exc))
    except RegistryUnavailable:
        return _error(503, "campaign store unavailable")
    if info is None:
        return _error(404, "no such campaign")
    return JSONResponse(info.as_json())


async def show_campaign(request: Request) -> JSONResponse:
    return await _answer(request, lambda c: c.get(request.path_params["campaign_id"]))


async def campaign_action(request: Request) -> JSONResponse:
    action = request.path_params["action"]
    if action not in ("pause", "resume", "cancel"):
        return _error(404, "no such action (pause, resume, cancel)")
    return await _answer(request, lambda c: c.act(request.path_params["campaign_id"], action))


async def campaign_results(request: Request) -> Response:
    campaigns = _campaigns(request)
    if isinstance(campaigns, JSONResponse):
        return campaigns
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in MEDIA_TYPES:
        return _error(400, "format must be jsonl or csv")
    campaign_id = request.path_params["campaign_id"]
    try:
        if await campaigns.get(campaign_id) is None:
            return _error(404, "no such campaign")
        rows = await campaigns.rows(campaign_id)
    except RegistryUnavailable:
        return _error(503, "campaign store unavailable")
    return Response(export_rows(rows, fmt), media_type=MEDIA_TYPES[fmt])


ROUTES = [
    Route("/admin/campaigns", create_campaign, methods=["POST"]),
    Route("/admin/campaigns", list_campaigns, methods=["GET"]),
    Route("/admin/campaigns/{campaign_id}", show_campaign, methods=["GET"]),
    Route("/admin/campaigns/{campaign_id}/results", campaign_results, methods=["GET"]),
    Route("/admin/campaigns/{campaign_id}/{action}", campaign_action, methods=["POST"]),
]
