"""One Responses API request (``POST {OPENAI_BASE_URL}/responses``), bounded and retried.

Used after calls, never on the call path, so it can afford to wait: each attempt has a hard
deadline (``asyncio.timeout`` over the whole exchange, not httpx's per-phase timeouts), and
timeouts, network errors, 408/409/429 and 5xx are retried with tenacity (exponential backoff
with jitter, or the server's ``Retry-After`` up to a cap), a bounded number of times. Other
statuses are final. Whatever goes wrong ends as an :class:`AnalysisFailure` with a code from
a small fixed set (the metrics label) and a message that never carries the API key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import tenacity

from callserver.records.redaction import Redactor
from callserver.tls import client_tls

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Plus every 5xx."""


class AnalysisFailure(Exception):
    """Why an analysis has no result. ``code`` is one of
    :data:`callserver.metric_labels.ANALYSIS_OUTCOMES` (other than ``completed``)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.attempts = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "attempts": self.attempts,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ResponsesAnswer:
    """The text of a completed response, with what a receiver may want to audit."""

    text: str
    response_id: str | None
    model: str | None
    usage: dict[str, Any]
    attempts: int


def _retry_after(headers: httpx.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(float(raw) * scale, 0.0)
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff
    return None


def _error_detail(body: Any) -> tuple[str, str]:
    """(code or type, message) of an OpenAI error body, empty strings when absent."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = error.get("code") or error.get("type") or ""
    return str(code)[:80], str(error.get("message") or "")[:300]


def output_text(body: dict[str, Any]) -> str:
    """The answer text of a Responses API response body, or the failure it stands for."""
    status = body.get("status")
    if status == "incomplete":
        details = body.get("incomplete_details")
        reason = (details.get("reason") if isinstance(details, dict) else None) or "unknown"
        raise AnalysisFailure("incomplete", f"the response is incomplete ({reason})")
    if status == "failed":
        code, message = _error_detail(body)
        retryable = code in ("server_error", "rate_limit_exceeded")
        raise AnalysisFailure(
            "bad_response", f"response failed ({code}) {message}", retryable=retryable
        )
    if status not in (None, "completed"):
        raise AnalysisFailure("bad_response", f"unexpected response status {str(status)[:40]!r}")
    texts: list[str] = []
    for item in body.get("output") or ():
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            if part.get("type") == "refusal":
                raise AnalysisFailure("refusal", str(part.get("refusal") or "")[:300])
            if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
    if not texts:
        raise AnalysisFailure("bad_response", "the response has no output text")
    return "".join(texts)


class ResponsesClient:
    """POSTs Responses API requests for one service; one connection pool, closed by
    :meth:`aclose`. Backoff knobs are parameters so tests run in milliseconds."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        on_retry: Callable[[], None] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.url = base_url.rstrip("/") + "/responses"
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "user-agent": "callserver-analysis",
        }
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, verify=client_tls()
        )
        self._backoff = tenacity.wait_random_exponential(
            multiplier=backoff_base_s, max=backoff_max_s, min=backoff_base_s
        )
        self._retry_after_cap_s = retry_after_cap_s
        self._on_retry = on_retry
        self._scrub = Redactor(secrets=[api_key, *secrets], sensitive_keys=()).scrub

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ResponsesClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def create(
        self, body: dict[str, Any], *, timeout_s: float, max_attempts: int
    ) -> ResponsesAnswer:
        """The completed response's text; raises :class:`AnalysisFailure` (``attempts`` set)."""
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        attempts = 0
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, AnalysisFailure) and exc.retryable
            ),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    parsed = await self._attempt(content, timeout_s)
                    text = output_text(parsed)
        except AnalysisFailure as exc:
            exc.attempts = attempts
            raise
        usage = parsed.get("usage")
        return ResponsesAnswer(
            text=text,
            response_id=parsed.get("id") if isinstance(parsed.get("id"), str) else None,
            model=parsed.get("model") if isinstance(parsed.get("model"), str) else None,
            usage=usage if isinstance(usage, dict) else {},
            attempts=attempts,
        )

    async def _attempt(self, content: bytes, timeout_s: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.post(
                    self.url, content=content, headers=self._headers, timeout=timeout_s
                )
        except (TimeoutError, httpx.TimeoutException):
            raise AnalysisFailure(
                "timeout", f"no answer within {timeout_s:g}s", retryable=True
            ) from None
        except httpx.HTTPError as exc:
            message = self._scrub(f"{type(exc).__name__}: {exc}")[:300]
            raise AnalysisFailure("network_error", message, retryable=True) from None
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if not response.is_success:
            raise self._http_failure(response, parsed)
        if not isinstance(parsed, dict):
            raise AnalysisFailure(
                "bad_response", f"HTTP {response.status_code} without a JSON object", retryable=True
            )
        return parsed

    def _http_failure(self, response: httpx.Response, parsed: Any) -> AnalysisFailure:
        status = response.status_code
        code, message = _error_detail(parsed)
        text = f"HTTP {status}" + (f" ({code})" if code else "")
        if message and status not in (401, 403):  # auth errors may echo part of the key
            text += f": {self._scrub(message)}"
        return AnalysisFailure(
            "http_error",
            text,
            retryable=status in RETRYABLE_STATUS or status >= 500,
            status=status,
            retry_after=_retry_after(response.headers),
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, AnalysisFailure) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry_after_cap_s)
        return float(self._backoff(state))

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "analysis request failed (%s); retrying",
            getattr(exc, "code", type(exc).__name__),
            extra={"attempt": state.attempt_number},
        )
        if self._on_retry is not None:
            self._on_retry()
