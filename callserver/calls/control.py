"""Call control over OpenAI's REST API: accept, reject, refer, hang up.

Each method maps the API's answers onto what the call manager needs to decide: done,
the call is gone (404), or failed. Transient failures (connect errors, timeouts, 429, 5xx)
are retried with jittered exponential backoff (tenacity) but never past the deadline the
caller passes in: a ringing phone does not wait for our retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


RestObserver = Callable[[str, str, "dict[str, Any] | None", "int | None", "str | None"], None]
"""(call_id, action, request body, HTTP status or None, error or None), once per attempt."""


class ControlError(Exception):
    """A call-control request failed for good (non-retryable, or out of time)."""

    def __init__(self, action: str, status: int | None, detail: str) -> None:
        super().__init__(f"{action} failed: {detail}")
        self.action = action
        self.status = status
        self.detail = detail


class CallGone(ControlError):
    """404: the call no longer exists (caller hung up, or already ended)."""


class _Retryable(Exception):
    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _error_detail(response: httpx.Response) -> str:
    """The API's error message, if it sent one, else the status line (never headers)."""
    try:
        message = response.json().get("error", {}).get("message")
    except Exception:
        message = None
    detail = f"HTTP {response.status_code}"
    return f"{detail}: {str(message)[:200]}" if message else detail


class CallControlClient:
    """Thin client for ``/realtime/calls/{call_id}/{action}``; one per process."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 2.0,
        max_attempts: int = 8,
        on_retry: Callable[[str], None] | None = None,
        observer: RestObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            transport=transport,
        )
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._on_retry = on_retry
        self.observer = observer

    async def aclose(self) -> None:
        await self._client.aclose()

    async def accept(self, call_id: str, session: dict[str, Any], *, deadline: float) -> None:
        """Accept a ringing call with a full session config; raises CallGone/ControlError."""
        await self._post(call_id, "accept", session, deadline=deadline)

    async def reject(self, call_id: str, status_code: int, *, deadline: float) -> None:
        """Decline a ringing call with a SIP status (486 busy, 603 decline, ...)."""
        await self._post(call_id, "reject", {"status_code": status_code}, deadline=deadline)

    async def refer(self, call_id: str, target_uri: str, *, deadline: float) -> None:
        """Cold-transfer a live call to a ``tel:`` or ``sip:`` URI (SIP REFER)."""
        await self._post(call_id, "refer", {"target_uri": target_uri}, deadline=deadline)

    async def hangup(self, call_id: str, *, deadline: float) -> bool:
        """Hang up; returns False when the call was already gone (404), which is success."""
        try:
            await self._post(call_id, "hangup", None, deadline=deadline)
        except CallGone:
            return False
        return True

    async def _post(
        self, call_id: str, action: str, body: dict[str, Any] | None, *, deadline: float
    ) -> None:
        """POST with retries until success, a final answer, or the monotonic ``deadline``."""
        path = f"/realtime/calls/{quote(call_id, safe='')}/{action}"

        def out_of_time(state: RetryCallState) -> bool:
            return time.monotonic() >= deadline or state.attempt_number >= self._max_attempts

        def before_sleep(state: RetryCallState) -> None:
            if self._on_retry:
                self._on_retry(action)
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying %s", action, extra={"call_id": call_id, "detail": str(exc)[:200]})

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=out_of_time,
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._observed(call_id, path, action, body, deadline)
        except _Retryable as exc:
            raise ControlError(action, exc.status, f"gave up: {exc.detail}") from None

    async def _observed(
        self,
        call_id: str,
        path: str,
        action: str,
        body: dict[str, Any] | None,
        deadline: float,
    ) -> None:
        """One attempt, reported to the observer (call recording) whatever its outcome."""
        if self.observer is None:
            await self._attempt(path, action, body, deadline)
            return
        status: int | None = None
        error: str | None = None
        try:
            status = await self._attempt(path, action, body, deadline)
        except (_Retryable, ControlError) as exc:
            status = exc.status
            error = exc.detail
            raise
        finally:
            self.observer(call_id, action, body, status, error)

    async def _attempt(
        self, path: str, action: str, body: dict[str, Any] | None, deadline: float
    ) -> int:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retryable(None, "deadline passed")
        timeout = min(self._timeout_s, remaining)
        try:
            response = await self._client.post(
                path,
                json=body,
                timeout=httpx.Timeout(timeout),
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retryable(None, type(exc).__name__) from None
        if response.status_code < 300:
            return response.status_code
        detail = _error_detail(response)
        if response.status_code == 404:
            raise CallGone(action, 404, detail)
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(response.status_code, detail)
        raise ControlError(action, response.status_code, detail)
