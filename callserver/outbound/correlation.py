"""The signed header that ties a Twilio-bridged SIP leg to the outbound call it belongs to.

When Twilio dials for us, the callee's answer reaches OpenAI as an ordinary incoming SIP
call, and OpenAI's webhook is the first we hear of its id. The TwiML that bridges the leg
puts ``X-Callserver-Outbound: <attempt id>.<engine>.<answered by>.<expiry>.<signature>`` in
the INVITE (custom SIP headers ride in the ``<Sip>`` URI), and OpenAI hands SIP headers over
in the webhook. SIP headers are caller-controlled (anyone can INVITE the project's SIP URI),
so the value carries an HMAC-SHA256 of the rest with ``CALLSERVER_OUTBOUND_SIGNING_KEY``: a
forged one fails the signature, an old one the expiry, and a replayed one (a second call
with the same valid header) the single-use claim the intake makes in the call registry.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import time

HEADER = "X-Callserver-Outbound"
VALID_S = 15 * 60.0
"""A header is good for this long after the TwiML was served (ringing, bridging)."""
_ID_RE = re.compile(r"^out_[A-Za-z0-9]{8,64}$")
_WORD_RE = re.compile(r"^[a-z_]{0,32}$")


class CorrelationError(ValueError):
    """A correlation header that must be refused; ``reason`` is a short label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Bridge:
    """What a valid header says: whose leg this is, on which engine, who answered."""

    attempt_id: str
    engine: str
    answered_by: str | None


class Correlation:
    """Signs and verifies correlation headers with one key."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("CALLSERVER_OUTBOUND_SIGNING_KEY must be at least 16 characters")
        self._key = key.encode()

    def _mac(self, signed: str) -> str:
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")

    def sign(
        self,
        attempt_id: str,
        engine: str,
        answered_by: str | None = None,
        *,
        now: float | None = None,
        valid_s: float = VALID_S,
    ) -> str:
        answered = answered_by if answered_by and _WORD_RE.match(answered_by) else ""
        expires = int((now if now is not None else time.time()) + valid_s)
        signed = f"{attempt_id}.{engine}.{answered}.{expires}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, value: str, *, now: float | None = None) -> Bridge:
        """What a valid header says; raises CorrelationError otherwise."""
        parts = value.strip().split(".")
        if (
            len(parts) != 5
            or not _ID_RE.match(parts[0])
            or not _WORD_RE.match(parts[1])
            or not _WORD_RE.match(parts[2])
            or not parts[3].isdigit()
        ):
            raise CorrelationError("malformed")
        attempt_id, engine, answered, expires, mac = parts
        if not hmac.compare_digest(mac, self._mac(".".join(parts[:4]))):
            raise CorrelationError("bad_signature")
        if (now if now is not None else time.time()) > int(expires):
            raise CorrelationError("expired")
        return Bridge(attempt_id, engine, answered or None)
