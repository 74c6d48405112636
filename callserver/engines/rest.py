"""The HTTP mechanics every engine's call control shares: one POST with deadline-bound retries.

Engines own their paths and bodies (``engines/<name>/control.py``); this module only knows
how to send one, retry what is transient (connect errors, timeouts, 429, 5xx) with jittered
exponential backoff (tenacity) but never past the caller's monotonic deadline (a ringing
phone does not wait for our retries), and map final answers onto :mod:`engines.errors`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from callserver.engines.errors import CallGone, ControlError, DecidedElsewhere
from callserver.tls import client_tls

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DECISION_ALREADY_MADE = "decision_already_made"

RestObserver = Callable[[str, str, "dict[str, Any] | None", "int | None", "str | None"], None]
"""(call_id, action, request body, HTTP status or None, error or None), once per attempt."""


class _Retryable(Exception):
    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """(code, message) of an OpenAI error envelope, if the body is one."""
    try:
        error = response.json().get("error") or {}
    except Exception:
        return None, None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None), (str(message) if message else None)


error_fields = _error_fields
"""(code, message) of an OpenAI error envelope: for engines' requests outside ``post``."""


class DeadlineRest:
    """An ``httpx.AsyncClient`` on the OpenAI base URL plus the retry policy; one per process,
    shared by the engines' control clients."""

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
            verify=client_tls(),
        )
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._on_retry = on_retry
        self.observer = observer
        """Set by call recording: sees every attempt of every engine's requests."""

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, for engine requests that are not call control (downloads)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self,
        call_id: str,
        path: str,
        action: str,
        body: dict[str, Any] | None,
        *,
        deadline: float,
    ) -> None:
        """POST with retries until success, a final answer, or the monotonic ``deadline``.

        Raises :class:`CallGone` (404), :class:`DecidedElsewhere` (``decision_already_made``,
        whatever its status), or :class:`ControlError` (anything else final, or out of time).
        """

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
            response = await self._client.post(path, json=body, timeout=httpx.Timeout(timeout))
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retryable(None, type(exc).__name__) from None
        if response.status_code < 300:
            return response.status_code
        code, message = _error_fields(response)
        detail = f"HTTP {response.status_code}"
        if message:
            detail = f"{detail}: {message[:200]}"
        if code == DECISION_ALREADY_MADE:
            raise DecidedElsewhere(action, response.status_code, detail)
        if response.status_code == 404:
            raise CallGone(action, 404, detail)
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(response.status_code, detail)
        raise ControlError(action, response.status_code, detail)
