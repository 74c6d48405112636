"""Standard Webhooks verification (what OpenAI signs its webhooks with).

The HMAC itself is computed by ``standardwebhooks``, Svix's Standard Webhooks library: the
code ``svix.webhooks.Webhook`` wraps. The server imports it directly because ``import svix``
also loads svix's whole REST API client, 9 MiB in every process for nothing we call; the
test kit (``callserver.testing``) signs with ``svix`` itself, so the two stay cross-checked.
This module adds what the library leaves coarse: a precise reason for every refusal
(missing header, malformed timestamp, stale, future, no matching signature), a clock that
tests can set, and robustness against malformed signature lists (the library raises bare
``ValueError`` on some). Messages never contain the secret or a signature.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from callserver.webhooks.errors import WebhookError

TOLERANCE_S = 300


class SignatureVerifier:
    """Verifies ``webhook-id``/``webhook-timestamp``/``webhook-signature`` over raw bytes."""

    def __init__(
        self,
        secret: str,
        *,
        tolerance_s: int = TOLERANCE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("webhook secret is empty")
        try:
            self._webhook = Webhook(secret)
        except Exception:
            # Never echo the secret: say only what is wrong with its shape.
            raise ValueError("webhook secret is not a valid whsec_<base64> value") from None
        self._tolerance_s = tolerance_s
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """Return the delivery id (``webhook-id``) of a valid request, else raise 400/401."""
        lower = {k.lower(): v for k, v in headers.items()}
        msg_id = lower.get("webhook-id") or lower.get("svix-id")
        ts_raw = lower.get("webhook-timestamp") or lower.get("svix-timestamp")
        sig_raw = lower.get("webhook-signature") or lower.get("svix-signature")
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", ts_raw),
                ("webhook-signature", sig_raw),
            )
            if not value
        ]
        if missing:
            raise WebhookError(
                400, f"missing header(s): {', '.join(missing)}", reason="missing_headers"
            )
        assert msg_id and ts_raw and sig_raw
        if not ts_raw.isdigit():
            raise WebhookError(
                400, "webhook-timestamp is not integer Unix seconds", reason="bad_timestamp"
            )
        timestamp = int(ts_raw)
        now = self._clock()
        if timestamp < now - self._tolerance_s:
            raise WebhookError(400, "webhook-timestamp is too old", reason="stale")
        if timestamp > now + self._tolerance_s:
            raise WebhookError(400, "webhook-timestamp is in the future", reason="future")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookError(400, "body is not UTF-8", reason="bad_body") from None
        expected = self._webhook.sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), text)
        expected_b64 = expected.split(",", 1)[1].encode()
        for entry in sig_raw.split():
            version, _, value = entry.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected_b64):
                return msg_id
        raise WebhookError(401, "no matching signature", reason="bad_signature")
