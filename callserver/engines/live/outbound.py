"""GPT-Live outbound calls: ``POST /v1/live/sessions`` with a SIP transport.

The create body is the accept body's ``session`` without ``type`` (same graph source: voice
model prompt, voice, delegation), plus ``transport: {type: sip, destination, trunk}``. The
answer (201, or 200 per an older guide) is ``{session: {id}, transport: {type: sip}}``,
returned once the session is initialised and *before* the callee answers; ringing, the
answer or a failure then arrive on the sideband only (``transport.*``).

Every POST places a new call (``X-Client-Request-Id`` does not deduplicate), so this module
sends exactly one request and never retries: no tenacity, no ``openai`` client (whose
default ``max_retries=2`` turns one 504 into three placed calls). An answer that leaves the
outcome open (a timeout, a dropped connection, any 5xx including 502 "transport setup" and
504 "initialization timeout") raises :class:`CreateUnknown`: the call may be ringing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
from typing import Any

import httpx

from callserver.engines.live.accept import live_accept_body
from callserver.engines.rest import RestObserver, error_fields
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph

CREATE_PATH = "/live/sessions"
OUTBOUND_NOT_ENABLED = "outbound_sip_not_enabled"
_TRUNK_RE = re.compile(
    r"^sips:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<params>;transport=tcp)?$"
)
_BAD_CREDENTIAL = re.compile(r"[\r\n\x00]")


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class SipTrunk:
    """Where GPT-Live sends the INVITE and how it authenticates (SIP digest)."""

    provider_url: str
    username: str
    password: str

    def __repr__(self) -> str:  # never the password
        return f"SipTrunk({self.provider_url!r}, username={self.username!r})"


def trunk_problem(trunk: SipTrunk) -> str | None:
    """Why GPT-Live would refuse this trunk (its documented rules), or None."""
    match = _TRUNK_RE.match(trunk.provider_url)
    if match is None:
        return (
            "CALLSERVER_SIP_TRUNK_URL must be sips:host[:port][;transport=tcp] "
            "(TLS only; no user part, path, headers or other parameters)"
        )
    if match.group("port") and not 0 < int(match.group("port")) < 65536:
        return "CALLSERVER_SIP_TRUNK_URL: port out of range"
    host = match.group("host").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith((".local", ".localhost")) or "." not in host:
            return "CALLSERVER_SIP_TRUNK_URL: local host names are refused by GPT-Live"
    else:
        if not address.is_global or address.is_multicast:
            return "CALLSERVER_SIP_TRUNK_URL: private, loopback and multicast IPs are refused"
    if not trunk.username.strip() or len(trunk.username.encode()) > 256:
        return "CALLSERVER_SIP_TRUNK_USERNAME must be 1-256 bytes, not blank"
    if any(ch.isspace() for ch in trunk.username) or _BAD_CREDENTIAL.search(trunk.username):
        return "CALLSERVER_SIP_TRUNK_USERNAME must not contain whitespace, CR, LF or NUL"
    if len(trunk.password.encode()) > 4096 or _BAD_CREDENTIAL.search(trunk.password):
        return "CALLSERVER_SIP_TRUNK_PASSWORD must be at most 4096 bytes without CR, LF, NUL"
    return None


async def create_body(
    built: BuiltGraph,
    context: CallToolContext | None,
    *,
    destination: str,
    trunk: SipTrunk,
    caller_number: str,
) -> dict[str, Any]:
    """The create request for one outbound call of a Live graph."""
    session = dict((await live_accept_body(built, context))["session"])
    session.pop("type", None)  # the create's session is a MediaSessionConfig: no type
    return {
        "session": session,
        "transport": {
            "type": "sip",
            "destination": destination,
            "trunk": {
                "provider_url": trunk.provider_url,
                "auth": {"type": "digest", "username": trunk.username, "password": trunk.password},
                "caller_number": caller_number,
            },
        },
    }


class CreateRefused(Exception):
    """The create was answered with a final refusal: no call was placed."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message

    @property
    def not_enabled(self) -> bool:
        return self.status == 403 and self.code == OUTBOUND_NOT_ENABLED


class CreateUnknown(Exception):
    """The create's outcome is unknown (timeout, dropped connection, 5xx): a call may have
    been placed. Never retried automatically."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def create_session(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    timeout_s: float,
    attempt_id: str,
    observer: RestObserver | None = None,
) -> str:
    """POST the create once; the new session's id. Raises CreateRefused or CreateUnknown."""
    status: int | None = None
    error: str | None = None
    started = time.monotonic()
    try:
        try:
            response = await client.post(CREATE_PATH, json=body, timeout=httpx.Timeout(timeout_s))
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            error = f"{type(exc).__name__} after {time.monotonic() - started:.1f}s"
            raise CreateUnknown(None, error) from None
        status = response.status_code
        if status in (200, 201):
            session = _session_id(response)
            if session is None:
                error = "answer without session.id"
                raise CreateUnknown(status, f"HTTP {status}: {error}")
            return session
        code, message = error_fields(response)
        error = f"HTTP {status}" + (f" {code}" if code else "")
        if status >= 500 or status == 408:
            raise CreateUnknown(status, f"{error}: {(message or '')[:200]}")
        raise CreateRefused(status, code, (message or "")[:300])
    finally:
        if observer is not None:
            observer(attempt_id, "create", body, status, error)


def _session_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    session = data.get("session") if isinstance(data, dict) else None
    session_id = session.get("id") if isinstance(session, dict) else None
    return session_id if isinstance(session_id, str) and session_id else None
