"""Standard Webhooks verification, including OpenAI's published test vector."""

from __future__ import annotations

import pytest

from callserver.webhooks.errors import WebhookError
from callserver.webhooks.signature import SignatureVerifier

VECTOR_SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
VECTOR_ID = "wh_685c059ae39c8190af8c71ed1022a24d"
VECTOR_TS = 1750861210
VECTOR_BODY = (
    b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", '
    b'"created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
)
VECTOR_SIG = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="


def headers(sig: str = VECTOR_SIG, ts: int | str = VECTOR_TS, msg_id: str = VECTOR_ID) -> dict:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def verifier(now: float = VECTOR_TS) -> SignatureVerifier:
    return SignatureVerifier(VECTOR_SECRET, clock=lambda: now)


def test_public_vector_verifies() -> None:
    assert verifier().verify(VECTOR_BODY, headers()) == VECTOR_ID


def test_vector_among_several_signatures() -> None:
    sig = f"v1,AAAA v2,whatever {VECTOR_SIG}"
    assert verifier().verify(VECTOR_BODY, headers(sig=sig)) == VECTOR_ID


@pytest.mark.parametrize(
    ("hdrs", "body", "now", "status", "fragment"),
    [
        (headers(), VECTOR_BODY + b" ", VECTOR_TS, 401, "no matching signature"),
        (headers(sig="v1,not-base64!!"), VECTOR_BODY, VECTOR_TS, 401, "no matching signature"),
        (headers(sig="garbage"), VECTOR_BODY, VECTOR_TS, 401, "no matching signature"),
        (headers(ts="17x"), VECTOR_BODY, VECTOR_TS, 400, "integer Unix seconds"),
        (headers(), VECTOR_BODY, VECTOR_TS + 301, 400, "too old"),
        (headers(), VECTOR_BODY, VECTOR_TS - 301, 400, "in the future"),
        ({"webhook-id": VECTOR_ID}, VECTOR_BODY, VECTOR_TS, 400, "webhook-timestamp"),
        (headers(), b"\xff\xfe", VECTOR_TS, 400, "not UTF-8"),
    ],
)
def test_refusals_are_precise(hdrs, body, now, status, fragment) -> None:
    with pytest.raises(WebhookError) as caught:
        verifier(now).verify(body, hdrs)
    assert caught.value.status in (status, 400)
    assert fragment in caught.value.message
    assert "gUAg4R2h" not in caught.value.message  # never echo a signature
    assert "RdvaYFYU" not in caught.value.message  # never echo the secret


def test_tolerance_edges_accept() -> None:
    assert verifier(VECTOR_TS + 300).verify(VECTOR_BODY, headers()) == VECTOR_ID
    assert verifier(VECTOR_TS - 300).verify(VECTOR_BODY, headers()) == VECTOR_ID


def test_bad_secret_message_hides_secret() -> None:
    with pytest.raises(ValueError) as caught:
        SignatureVerifier("whsec_%%%not-base64%%%")
    assert "not-base64" not in str(caught.value)
