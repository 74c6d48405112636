"""Build the outbound service from settings (the app's lifespan calls this once).

A dialer exists when its settings are complete; a half-configured one stops the start-up
with a message naming the missing variable (never a secret's value), because a server that
silently cannot dial is worse than one that does not start.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING

from callserver.calls.manager import CallManager, ConfigSource
from callserver.calls.outbound import OutboundDialer
from callserver.calls.registry import min_cap
from callserver.calls.registry_factory import default_instance_id
from callserver.engines.live.outbound import SipTrunk, trunk_problem
from callserver.engines.rest import DeadlineRest
from callserver.outbound.bridge import BridgeBoard
from callserver.outbound.campaigns.runner import CampaignRunner
from callserver.outbound.campaigns.service import Campaigns
from callserver.outbound.campaigns.sqlite_store import SqliteCampaignStore
from callserver.outbound.campaigns.store import CampaignStore
from callserver.outbound.correlation import Correlation
from callserver.outbound.dnc import DncError, DoNotCall, read_dnc_file
from callserver.outbound.intake import BridgeIntake
from callserver.outbound.live_dialer import LiveDialer
from callserver.outbound.service import OutboundService
from callserver.outbound.twilio_answer import TwilioOutbound
from callserver.outbound.twilio_api import TwilioCallsApi
from callserver.outbound.twilio_dialer import TwilioDialer
from callserver.settings import Settings
from callserver.webhooks import twiml
from callserver.webhooks.twilio import TwilioSignature

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


class OutboundConfigError(RuntimeError):
    pass


def outbound_cap(settings: Settings) -> int:
    """Outbound calls this instance may carry: the call cap minus the inbound share."""
    cap = min_cap(settings.max_concurrent_calls, settings.fleet_max_calls)
    return max(0, math.floor(cap * (1 - settings.inbound_share) + 1e-9))


def sip_target(settings: Settings) -> str | None:
    """What Twilio's bridge dials: OpenAI's SIP connector for the project."""
    if settings.sip_uri:
        return settings.sip_uri
    if settings.openai_project_id:
        return twiml.default_sip_uri(settings.openai_project_id)
    return None


def live_dialer(settings: Settings, rest: DeadlineRest) -> LiveDialer | None:
    if not settings.sip_trunk_url:
        if settings.sip_trunk_username or settings.sip_trunk_password:
            raise OutboundConfigError(
                "CALLSERVER_SIP_TRUNK_USERNAME/PASSWORD are set but CALLSERVER_SIP_TRUNK_URL is not"
            )
        return None
    password = settings.sip_trunk_password.get_secret_value() if settings.sip_trunk_password else ""
    if not settings.sip_trunk_username or not password:
        raise OutboundConfigError(
            "CALLSERVER_SIP_TRUNK_URL is set: CALLSERVER_SIP_TRUNK_USERNAME and "
            "CALLSERVER_SIP_TRUNK_PASSWORD are required too (SIP digest auth)"
        )
    trunk = SipTrunk(settings.sip_trunk_url, settings.sip_trunk_username, password)
    problem = trunk_problem(trunk)
    if problem is not None:
        raise OutboundConfigError(problem)
    return LiveDialer(
        rest.client, trunk, timeout_s=settings.outbound_create_timeout_s, observer=rest.observer
    )


def twilio_dialer(
    settings: Settings, board: BridgeBoard, manager: CallManager
) -> TwilioDialer | None:
    if not settings.twilio_account_sid:
        return None
    missing = []
    if settings.twilio_auth_token is None or not settings.twilio_auth_token.get_secret_value():
        missing.append("TWILIO_AUTH_TOKEN")
    if not settings.public_base_url:
        missing.append("CALLSERVER_PUBLIC_URL (Twilio's callbacks come there)")
    if settings.outbound_signing_key is None:
        missing.append("CALLSERVER_OUTBOUND_SIGNING_KEY (signs the bridge header)")
    if sip_target(settings) is None:
        missing.append("OPENAI_PROJECT_ID or CALLSERVER_SIP_URI (what the bridge dials)")
    if missing:
        raise OutboundConfigError(
            "TWILIO_ACCOUNT_SID is set (the Twilio dialer): also set " + ", ".join(missing)
        )
    assert settings.twilio_auth_token is not None and settings.public_base_url is not None
    api = TwilioCallsApi(
        settings.twilio_api_url,
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        timeout_s=settings.outbound_create_timeout_s,
    )
    return TwilioDialer(
        api,
        board,
        manager.registry,
        public_base_url=settings.public_base_url,
        machine_detection=settings.twilio_machine_detection,
    )


def build_outbound(
    settings: Settings,
    manager: CallManager,
    config: ConfigSource,
    rest: DeadlineRest,
    *,
    redis: Redis | None = None,
) -> OutboundService:
    """The service, its dialers and the manager's intake for bridged legs."""
    key = settings.outbound_signing_key
    try:
        correlation = Correlation(key.get_secret_value()) if key is not None else None
    except ValueError as exc:
        raise OutboundConfigError(str(exc)) from None
    try:
        dnc = DoNotCall(read_dnc_file(settings.dnc_path) if settings.dnc_path else ())
    except DncError as exc:
        raise OutboundConfigError(f"CALLSERVER_DNC_FILE: {exc}") from None
    board = BridgeBoard(redis, settings.redis_key_prefix)
    dialers: dict[str, OutboundDialer] = {}
    if (live := live_dialer(settings, rest)) is not None:
        dialers["live"] = live
    if (twilio := twilio_dialer(settings, board, manager)) is not None:
        dialers["twilio"] = twilio
    intake = BridgeIntake(
        correlation=correlation,
        board=board,
        registry=manager.registry,
        engines=manager.engines,
        metrics=manager.metrics,
        shared=redis is not None,
    )
    manager.outbound_intake = intake
    cap = outbound_cap(settings)
    if dialers:
        log.info(
            "outbound calling on: %s (at most %d outbound calls here)", ", ".join(dialers), cap
        )
    service = OutboundService(
        settings=settings,
        manager=manager,
        config=config,
        dialers=dialers,
        board=board,
        intake=intake,
        dnc=dnc,
        outbound_cap=cap,
    )
    if twilio is not None:
        assert correlation is not None and settings.twilio_auth_token is not None
        target = sip_target(settings)
        assert target is not None
        service.twilio = TwilioOutbound(
            manager=manager, config=config, correlation=correlation, sip_uri=target
        )
        service.twilio_signature = TwilioSignature(
            settings.twilio_auth_token.get_secret_value(),
            {k: v.get_secret_value() for k, v in settings.twilio_shared_keys.items()},
        )
    return service


def build_campaigns(
    settings: Settings, outbound: OutboundService, *, redis: Redis | None = None
) -> Campaigns:
    """The campaigns and this instance's runner: in Redis with ``REDIS_URL``, else SQLite."""
    store: CampaignStore
    if redis is not None:
        from callserver.outbound.campaigns.redis_store import RedisCampaignStore

        store = RedisCampaignStore(redis, settings.redis_key_prefix)
    else:
        store = SqliteCampaignStore(settings.campaign_db_path)
    owner = f"{settings.instance_id or default_instance_id()}#{secrets.token_hex(4)}"
    runner = CampaignRunner(
        store,
        outbound,
        owner=owner,
        poll_s=settings.campaign_poll_s,
        lease_s=max(settings.redis_lease_s, 3 * settings.campaign_poll_s),
    )
    return Campaigns(store, runner, outbound)
