"""The HTTP surface: routes and lifespan only. Decisions live in ``calls/`` and below.

``create_app`` builds every long-lived object in the lifespan (no module-level state) and
stores them on ``app.state`` for the routes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callserver import admin, admin_calls, admin_campaigns
from callserver.calls.config_store import ConfigStore
from callserver.calls.manager import CallManager, Draining
from callserver.calls.moves import CallMoves
from callserver.calls.registry import RegistryUnavailable
from callserver.calls.registry_factory import make_registry
from callserver.config_holder import ConfigHolder
from callserver.engines.base import Engine, EngineOptions, ReattachPolicy
from callserver.engines.registry import build_engines
from callserver.engines.rest import DeadlineRest
from callserver.graph import Config
from callserver.metrics import Metrics
from callserver.outbound.service import OutboundService
from callserver.outbound.setup import build_campaigns, build_outbound
from callserver.records.analysis_queue import AnalysisQueue
from callserver.records.cassette import make_recorder_factory
from callserver.records.outbox import Outbox
from callserver.records.post_call_service import start_post_call
from callserver.settings import Settings
from callserver.twilio_outbound_routes import outbound_answer, outbound_status
from callserver.twilio_routes import (
    TwilioService,
    build_twilio,
    twilio_dial_action,
    twilio_status,
    twilio_voice,
)
from callserver.webhooks.body import read_capped_body
from callserver.webhooks.errors import WebhookError
from callserver.webhooks.openai import INCOMING_EVENTS, parse_event, parse_incoming_call
from callserver.webhooks.signature import SignatureVerifier

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class Services:
    """Everything the routes need, built once per app in the lifespan."""

    settings: Settings
    config: ConfigHolder
    manager: CallManager
    verifier: SignatureVerifier | None
    metrics: Metrics
    outbox: Outbox | None = None
    analysis: AnalysisQueue | None = None
    """Post-call analyses (with the outbox; None without post-call receivers)."""
    twilio: TwilioService | None = None
    """The Twilio number integration; None when TWILIO_AUTH_TOKEN is unset."""
    outbound: OutboundService | None = None
    """Outbound calls (dialers, campaigns)."""


def build_verifier(settings: Settings) -> SignatureVerifier | None:
    """Signature checks are on unless the explicit development flag is set."""
    if settings.insecure_skip_signature:
        log.critical(
            "CALLSERVER_INSECURE_SKIP_SIGNATURE is set: webhook signatures are NOT checked. "
            "Anyone who can reach this server can make it answer calls. Development only."
        )
        return None
    if settings.webhook_secret is None:
        raise RuntimeError(
            "OPENAI_WEBHOOK_SECRET is not set (whsec_...). Set it, or for local development "
            "only set CALLSERVER_INSECURE_SKIP_SIGNATURE=1."
        )
    return SignatureVerifier(settings.webhook_secret.get_secret_value())


def create_app(settings: Settings, config: ConfigHolder | None = None) -> Starlette:
    """The ASGI app. ``config`` may be passed pre-loaded (the CLI validates before serving)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import agents

        if not settings.tracing_enabled:
            agents.set_tracing_disabled(True)
        verifier = build_verifier(settings)
        if not settings.openai_api_key.get_secret_value():
            log.warning("OPENAI_API_KEY is not set: calls will be refused by OpenAI (401)")
        holder = config or ConfigHolder.load(settings.config_path)
        registry, coordinator = make_registry(settings)
        metrics = Metrics()
        _allow_labels(metrics, holder)
        api_key = settings.openai_api_key.get_secret_value()
        rest = DeadlineRest(
            settings.openai_base_url,
            api_key,
            timeout_s=settings.http_timeout_s,
            on_retry=metrics.control_retry,
        )
        engines = build_engines(
            rest,
            EngineOptions(
                settings.openai_base_url,
                api_key,
                recording_dir=settings.recording_dir,
                reattach=ReattachPolicy(settings.reattach_budget_s),
            ),
        )
        await warm_up(holder, engines)
        recorder_factory = make_recorder_factory(settings, holder)
        manager = CallManager(
            settings=settings,
            registry=registry,
            engines=engines,
            config=holder,
            metrics=metrics,
            recorder_factory=recorder_factory,
        )
        if recorder_factory is not None:
            rest.observer = manager.observe_rest
        mover: CallMoves | None = None
        if coordinator is not None:
            manager.coordinator = coordinator
            store = ConfigStore(coordinator.registry.client, settings.redis_key_prefix)
            mover = manager.mover = CallMoves(manager, coordinator.registry, holder, store)
            await _publish_config(store, holder.current)
            holder.on_loaded.append(lambda config: _publish_config(store, config))
            coordinator.bind(
                on_end_request=lambda call_id, reason: manager.end(call_id, reason),
                on_orphan=manager.hangup_orphan,
                on_transfer=lambda call_id, target, reason: manager.transfer(
                    call_id, target, reason=reason
                ),
                on_move=mover.on_message,
                on_adopt=mover.adopt_orphan,
            )
            await coordinator.start()
        twilio = build_twilio(settings, manager, holder)
        redis = getattr(registry, "client", None)
        outbound = build_outbound(settings, manager, holder, rest, redis=redis)
        campaigns = outbound.campaigns = build_campaigns(settings, outbound, redis=redis)
        await campaigns.runner.start()
        post_call = await start_post_call(settings, metrics, holder, manager.end_listeners)
        app.state.services = Services(
            settings,
            holder,
            manager,
            verifier,
            metrics=metrics,
            outbox=post_call.outbox if post_call is not None else None,
            analysis=post_call.analysis if post_call is not None else None,
            twilio=twilio,
            outbound=outbound,
        )
        log.info(
            "callserver ready",
            extra={"config_hash": holder.current.config_hash, "base_url": settings.openai_base_url},
        )
        try:
            yield
        finally:
            campaigns.runner.stop_dialing()  # no new calls while calls drain
            await manager.drain(settings.drain_timeout_s)
            await campaigns.runner.aclose()
            await outbound.aclose()
            if mover is not None:
                await mover.aclose()
            if coordinator is not None:  # after the drain: routed ends and leases still work
                await coordinator.aclose()  # also closes the Redis client
            if recorder_factory is not None:
                await recorder_factory.aclose()
            if post_call is not None:
                await post_call.aclose()
            await rest.aclose()

    return Starlette(
        routes=[
            Route("/webhooks/openai", openai_webhook, methods=["POST"]),
            # GET too: a number's webhooks may be set to HTTP GET (the dial action is ours).
            Route("/twilio/voice", twilio_voice, methods=["GET", "POST"]),
            Route("/twilio/status", twilio_status, methods=["GET", "POST"]),
            Route("/twilio/dial-action", twilio_dial_action, methods=["POST"]),
            Route("/twilio/outbound/answer", outbound_answer, methods=["POST"]),
            Route("/twilio/outbound/status", outbound_status, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *admin.ROUTES,
            *admin_calls.ROUTES,
            *admin_campaigns.ROUTES,
        ],
        lifespan=lifespan,
    )


async def _publish_config(store: ConfigStore, config: Config) -> None:
    """Share a config by hash: a call that started on it can move to another instance."""
    try:
        await store.publish(config)
    except RegistryUnavailable as exc:
        log.warning("config not shared (calls on it cannot move): %s", exc)


async def warm_up(holder: ConfigHolder, engines: Mapping[str, Engine]) -> None:
    """Build every graph's accept payload once before taking calls.

    The SDK and pydantic initialise lazily (~20 ms on the first payload); paying that at
    start-up keeps it off the first caller's ring time, and proves each graph builds.
    """
    from callserver.graph.context import CallInfo

    probe = CallInfo(call_id="rtc_warmup", caller="+10000000000", dialed="+10000000000")
    for graph in holder.current.graphs.values():
        built = graph.build(probe)
        await engines[graph.engine].accept_body(built, None)  # type: ignore[arg-type]


def _allow_labels(metrics: Metrics, holder: ConfigHolder) -> None:
    """Let the configured graph and tool names through as metric labels (bounded)."""
    config = holder.current
    metrics.allow_graphs(config.graphs)
    tools: set[str] = set()
    for graph in config.graphs.values():
        tools.update(getattr(graph, "tool_names", ()) or ())
    metrics.allow_tools(tools)


def _services(request: Request) -> Services:
    return request.app.state.services


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def openai_webhook(request: Request) -> JSONResponse:
    """An incoming-call event (Realtime or Live) -> claimed call, accepted in the background,
    and 200 at once. Other event types are acknowledged and ignored."""
    services = _services(request)
    received = time.monotonic()
    try:
        body = await read_capped_body(request, services.settings.max_webhook_body_bytes)
        if services.verifier is not None:
            webhook_id = services.verifier.verify(body, request.headers)
        else:
            webhook_id = request.headers.get("webhook-id", "")
        event = parse_event(body)
        if not webhook_id:
            webhook_id = f"event:{event.event_id}"
        if event.type not in INCOMING_EVENTS:
            return JSONResponse({"status": "ignored", "type": event.type[:100]})
        call = parse_incoming_call(event, webhook_id, tuple(request.headers.items()))
        outcome = await services.manager.handle_incoming(call, received=received)
    except WebhookError as exc:
        log.warning("webhook refused: %s", exc.message, extra={"reason": exc.reason})
        services.metrics.webhook_rejected(exc.reason)
        return _error(exc.status, exc.message)
    except Draining:
        return _error(503, "draining: not taking new calls", headers={"Retry-After": "5"})
    except RegistryUnavailable:
        log.error("call registry unavailable: webhook refused with 503 (OpenAI retries)")
        return _error(503, "call registry unavailable", headers={"Retry-After": "2"})
    return JSONResponse({"status": outcome, "call_id": call.call_id})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    services = _services(request)
    reasons = []
    if services.manager.draining:
        reasons.append("draining")
    ok, detail = await services.manager.registry.healthy()
    if not ok:
        reasons.append(f"registry: {detail}")
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return JSONResponse(
        {
            "status": "ready",
            "active_calls": services.manager.active_count,
            "config_hash": services.config.current.config_hash,
        }
    )


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = _services(request).metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})
