"""Twilio's Calls API, as the Twilio dialer uses it: create (once), fetch, cancel.

``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (form-encoded, HTTP basic auth with the
account SID and auth token) places a call and answers 201 with its ``sid``. Like GPT-Live's
create it is not idempotent, so it is sent once: a timeout or a 5xx leaves the outcome
``unknown`` (a call may be ringing), a 4xx is a refusal (nothing placed). The base URL is
``CALLSERVER_TWILIO_API_URL`` so the dialer can run against a local fake.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx

from callserver.tls import client_tls

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
AUTH_ERRORS = frozenset({401, 403})


class TwilioRefused(Exception):
    """Twilio answered with a final error: no call was placed."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} (Twilio error {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class TwilioUnknown(Exception):
    """No final answer (timeout, dropped connection, 5xx): a call may have been placed."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallOrder:
    """One call for Twilio to place."""

    to: str
    from_: str
    answer_url: str
    status_url: str
    ring_timeout_s: int
    machine_detection: str | None = None
    """``Enable`` or ``DetectMessageEnd``; None: off."""


class TwilioCallsApi:
    """The Calls API of one account, on one pooled client."""

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        *,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}",
            auth=(account_sid, auth_token),
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            verify=client_tls(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(self, order: CallOrder) -> str:
        """Place the call; its CallSid. Raises TwilioRefused or TwilioUnknown; never retries."""
        form: dict[str, str | list[str]] = {
            "To": order.to,
            "From": order.from_,
            "Url": order.answer_url,
            "Method": "POST",
            "StatusCallback": order.status_url,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(STATUS_EVENTS),
            "Timeout": str(order.ring_timeout_s),
        }
        if order.machine_detection:
            form["MachineDetection"] = order.machine_detection
        try:
            response = await self._client.post("/Calls.json", data=form)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TwilioUnknown(type(exc).__name__) from None
        if response.status_code in (200, 201):
            sid = _json(response).get("sid")
            if isinstance(sid, str) and sid:
                return sid
            raise TwilioUnknown(f"HTTP {response.status_code} without a call sid")
        if response.status_code >= 500 or response.status_code == 408:
            raise TwilioUnknown(f"HTTP {response.status_code}")
        body = _json(response)
        code = body.get("code") if isinstance(body.get("code"), int) else None
        raise TwilioRefused(response.status_code, code, str(body.get("message") or "")[:300])

    async def status(self, call_sid: str) -> str | None:
        """The call's current ``status`` (queued, ringing, in-progress, completed, busy...)."""
        try:
            response = await self._client.get(f"/Calls/{call_sid}.json")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        status = _json(response).get("status")
        return status if isinstance(status, str) else None

    async def cancel(self, call_sid: str) -> bool:
        """End the call: ``canceled`` while queued or ringing, else ``completed``."""
        for status in ("canceled", "completed"):
            try:
                response = await self._client.post(
                    f"/Calls/{call_sid}.json", data={"Status": status}
                )
            except httpx.HTTPError as exc:
                log.warning("twilio cancel failed: %s", type(exc).__name__)
                return False
            if response.status_code < 300:
                return True
        return False


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
