"""One settings object for the whole service, read from the environment once at start-up.

Everything that differs between a laptop demo and production lives here, so the rest of the
code receives plain values and never reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class SettingsError(ValueError):
    """A setting from the environment is missing or malformed; names the variable."""


class Settings(BaseModel):
    """Service settings. Build with :meth:`from_env` in the service, directly in tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = DEFAULT_BASE_URL
    webhook_secret: SecretStr | None = None
    insecure_skip_signature: bool = False
    """Development only: accept unsigned webhooks. Logged loudly at start-up."""
    config_path: Path = Path("config")
    """The bundled directory: every graph in it plus its routes.yaml (relative to the cwd)."""
    max_concurrent_calls: Annotated[int, Field(ge=1)] = 100
    """Per instance: what one process can carry. Over it a call is refused (SIP 486)."""
    fleet_max_calls: Annotated[int, Field(ge=1)] | None = None
    """All instances sharing ``REDIS_URL`` together: what the OpenAI account allows. None:
    no fleet-wide cap (then the fleet takes up to instances x ``max_concurrent_calls``)."""
    ring_deadline_s: Annotated[float, Field(gt=0)] = 5.0
    """Time from webhook to a settled accept/reject, retries included."""
    max_call_duration_s: Annotated[float, Field(gt=0)] = 55 * 60
    """Cap for every call; OpenAI ends sessions at 60 minutes."""
    drain_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    reattach_budget_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    """How long a call whose control connection dropped may take to be reattached before it
    is hung up (``control_lost``). The call itself survives the drop at OpenAI."""
    http_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    """Per-request timeout for OpenAI REST calls."""
    max_webhook_body_bytes: int = 64 * 1024
    dedupe_ttl_s: float = 3600.0
    tracing_enabled: bool = False
    """Export agents-SDK traces to OpenAI. Off by default: call content is sensitive."""
    twilio_auth_token: SecretStr | None = None
    twilio_shared_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Twilio SharedKey secrets by key id, for webhooks whose Webhook Setting signs with a
    SharedKey (``X-Twilio-Webhooks-Signature-Settings: key=<id>,...``); two during a key
    rotation. Environment: ``<id>=<secret>[,<id>=<secret>]``."""
    public_base_url: str | None = None
    """Public URL of this service as Twilio calls it (e.g. https://calls.example.com); Twilio
    signs the URL it requested, so signature checks need it behind a proxy."""
    trust_proxy: bool = False
    """Rebuild the public URL from X-Forwarded-Proto/Host (only behind a trusted proxy)."""
    twilio_reject_say: str | None = None
    """When set, refused Twilio calls hear this sentence then a hangup, instead of busy."""
    openai_project_id: str | None = None
    sip_uri: str | None = None
    """SIP URI Twilio dials; default sip:<OPENAI_PROJECT_ID>@sip.api.openai.com;transport=tls."""
    postcall_urls: tuple[str, ...] = ()
    """Where ``call.ended`` events are POSTed (comma-separated in the environment)."""
    postcall_secret: SecretStr | None = None
    """Our own ``whsec_`` secret that signs post-call events (Standard Webhooks)."""
    outbox_path: Path = Path("callserver-outbox.sqlite3")
    redact_numbers: bool = False
    """Leave caller/dialed numbers out of logs and post-call events (last 4 digits only)."""
    redact_transcript: tuple[Literal["card", "phone", "email"], ...] = ()
    """Hidden in every graph's transcripts sent out (post-call events, the analysis request),
    on top of each graph's ``redact:``; comma-separated in the environment."""
    analysis_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    """Post-call analyses (Responses API requests) in flight at once; more wait their turn."""
    recording_mode: Literal["off", "on", "sampled"] = "off"
    """Write a cassette per call (``on``), per sampled call (``sampled``), or none."""
    recording_sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    recording_dir: Path = Path("recordings")
    recording_redact_fields: tuple[str, ...] = ()
    """Extra fields hidden in cassettes, e.g. From,To (caller numbers)."""
    admin_token: SecretStr | None = None
    """Enables the /admin API; requests must carry it as a bearer token."""
    redis_url: str | None = None
    """Shared registry for several instances (redis://host:6379/0); unset = in-process."""
    redis_lease_s: Annotated[float, Field(gt=0)] = 15.0
    """Lease of each call in Redis; a killed instance's calls are hung up within about
    this plus a sweep interval (lease / 5)."""
    redis_key_prefix: str = "callserver:"
    redis_local_fallback: bool = False
    """Redis down: admit calls on in-process claims instead of refusing them."""
    instance_id: str | None = None
    """Name of this instance in the shared registry; default host:pid."""
    log_level: str = "INFO"
    log_format: str = "json"
    # ---- outbound calls (callserver/outbound) ----
    sip_trunk_url: str | None = None
    """GPT-Live dialer: the trunk GPT-Live sends outbound INVITEs to (``sips:host[:port]``)."""
    sip_trunk_username: str | None = None
    sip_trunk_password: SecretStr | None = None
    caller_number: str | None = None
    """E.164 number outbound calls come from (a graph's ``outbound.caller_number`` wins)."""
    twilio_account_sid: str | None = None
    """Twilio dialer: the account whose Calls API places calls (with TWILIO_AUTH_TOKEN)."""
    twilio_from: str | None = None
    """Twilio dialer: the Twilio number (E.164) calls come from."""
    twilio_api_url: str = "https://api.twilio.com"
    twilio_machine_detection: bool = False
    """Ask Twilio's answering-machine detection on calls it dials (graphs may override)."""
    outbound_signing_key: SecretStr | None = None
    """Signs the correlation header that ties a Twilio-bridged SIP leg to its outbound call."""
    outbound_create_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    """One outbound create request (GPT-Live, Twilio) may take this long; never retried."""
    inbound_share: Annotated[float, Field(ge=0, lt=1)] = 0.2
    """Share of the call cap kept for incoming calls: outbound calls never take it."""
    campaign_db_path: Path = Path("callserver-campaigns.sqlite3")
    """Campaign state without REDIS_URL (with it, campaigns live in Redis)."""
    dnc_path: Path | None = None
    """A do-not-call list (one number per line) applied to every outbound call."""
    campaign_poll_s: Annotated[float, Field(gt=0)] = 1.0
    """How often an idle campaign runner looks for due rows and other instances' changes."""

    @field_validator("caller_number", "twilio_from")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None and not _E164_RE.match(value):
            raise ValueError("must be an E.164 number such as +14155550100")
        return value

    @field_validator("twilio_api_url")
    @classmethod
    def _api_url_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("recording_redact_fields", "redact_transcript", mode="before")
    @classmethod
    def _split_fields(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("twilio_shared_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for n, part in enumerate(p.strip() for p in value.split(",")):
            key_id, sep, secret = part.partition("=")
            if not part:
                continue
            if not sep or not secret.strip() or not _KEY_ID_RE.match(key_id.strip()):
                # Never echo the part: it holds a secret.
                raise ValueError(f"entry {n + 1} is not <key id>=<secret>")
            keys[key_id.strip()] = secret.strip()
        return keys

    @field_validator("postcall_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("postcall_urls")
    @classmethod
    def _urls_are_http(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url[:80]}")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _base_url_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables; raise :class:`SettingsError` on bad ones."""
        env = os.environ if env is None else env
        mapping = {
            "openai_api_key": "OPENAI_API_KEY",
            "openai_base_url": "OPENAI_BASE_URL",
            "webhook_secret": "OPENAI_WEBHOOK_SECRET",
            "insecure_skip_signature": "CALLSERVER_INSECURE_SKIP_SIGNATURE",
            "config_path": "CALLSERVER_CONFIG",
            "max_concurrent_calls": "CALLSERVER_MAX_CALLS",
            "fleet_max_calls": "CALLSERVER_FLEET_MAX_CALLS",
            "ring_deadline_s": "CALLSERVER_RING_DEADLINE",
            "reattach_budget_s": "CALLSERVER_REATTACH_BUDGET",
            "max_call_duration_s": "CALLSERVER_MAX_CALL_DURATION",
            "drain_timeout_s": "CALLSERVER_DRAIN_TIMEOUT",
            "http_timeout_s": "CALLSERVER_HTTP_TIMEOUT",
            "tracing_enabled": "CALLSERVER_TRACING",
            "twilio_auth_token": "TWILIO_AUTH_TOKEN",
            "twilio_shared_keys": "TWILIO_SHARED_KEYS",
            "public_base_url": "CALLSERVER_PUBLIC_URL",
            "trust_proxy": "CALLSERVER_TRUST_PROXY",
            "twilio_reject_say": "CALLSERVER_TWILIO_REJECT_SAY",
            "openai_project_id": "OPENAI_PROJECT_ID",
            "sip_uri": "CALLSERVER_SIP_URI",
            "postcall_urls": "CALLSERVER_POSTCALL_URLS",
            "postcall_secret": "CALLSERVER_POSTCALL_SECRET",
            "outbox_path": "CALLSERVER_OUTBOX_PATH",
            "redact_numbers": "CALLSERVER_REDACT_NUMBERS",
            "redact_transcript": "CALLSERVER_REDACT_TRANSCRIPT",
            "analysis_concurrency": "CALLSERVER_ANALYSIS_CONCURRENCY",
            "recording_mode": "CALLSERVER_RECORDING",
            "recording_sample_rate": "CALLSERVER_RECORDING_SAMPLE_RATE",
            "recording_dir": "CALLSERVER_RECORDING_DIR",
            "recording_redact_fields": "CALLSERVER_RECORDING_REDACT",
            "admin_token": "CALLSERVER_ADMIN_TOKEN",
            "redis_url": "REDIS_URL",
            "redis_lease_s": "CALLSERVER_REDIS_LEASE",
            "redis_key_prefix": "CALLSERVER_REDIS_PREFIX",
            "redis_local_fallback": "CALLSERVER_REDIS_LOCAL_FALLBACK",
            "instance_id": "CALLSERVER_INSTANCE_ID",
            "log_level": "CALLSERVER_LOG_LEVEL",
            "log_format": "CALLSERVER_LOG_FORMAT",
            "sip_trunk_url": "CALLSERVER_SIP_TRUNK_URL",
            "sip_trunk_username": "CALLSERVER_SIP_TRUNK_USERNAME",
            "sip_trunk_password": "CALLSERVER_SIP_TRUNK_PASSWORD",
            "caller_number": "CALLSERVER_CALLER_NUMBER",
            "twilio_account_sid": "TWILIO_ACCOUNT_SID",
            "twilio_from": "CALLSERVER_TWILIO_FROM",
            "twilio_api_url": "CALLSERVER_TWILIO_API_URL",
            "twilio_machine_detection": "CALLSERVER_TWILIO_MACHINE_DETECTION",
            "outbound_signing_key": "CALLSERVER_OUTBOUND_SIGNING_KEY",
            "outbound_create_timeout_s": "CALLSERVER_OUTBOUND_CREATE_TIMEOUT",
            "inbound_share": "CALLSERVER_INBOUND_SHARE",
            "campaign_db_path": "CALLSERVER_CAMPAIGN_DB",
            "dnc_path": "CALLSERVER_DNC_FILE",
            "campaign_poll_s": "CALLSERVER_CAMPAIGN_POLL",
        }
        values: dict[str, object] = {}
        for field, var in mapping.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                values[field] = raw
        try:
            return cls(**values)
        except Exception as exc:  # pydantic.ValidationError
            errors = getattr(exc, "errors", None)
            if errors is None:
                raise SettingsError(str(exc)) from None
            parts = []
            for err in errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                parts.append(f"{mapping.get(field, field)}: {err['msg']}")
            raise SettingsError("; ".join(parts)) from None
