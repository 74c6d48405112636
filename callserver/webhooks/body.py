"""Read a request body with a hard size cap, without buffering more than the cap."""

from __future__ import annotations

from starlette.requests import Request

from callserver.webhooks.errors import WebhookError


async def read_capped_body(request: Request, limit: int) -> bytes:
    """Return the raw body, or raise 413 as soon as it is known to exceed ``limit``.

    A declared Content-Length over the limit is refused before reading anything; a chunked
    or lying body is refused the moment the running total passes the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise WebhookError(400, "invalid Content-Length header", reason="bad_request") from None
        if size > limit:
            raise WebhookError(413, f"body larger than {limit} bytes", reason="too_large")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise WebhookError(413, f"body larger than {limit} bytes", reason="too_large")
        chunks.append(chunk)
    return b"".join(chunks)
