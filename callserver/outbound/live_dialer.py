"""The GPT-Live dialer: ``POST /v1/live/sessions`` over the configured SIP trunk.

One request per call, never retried (``engines.live.outbound``). The attempt is on the record
(and, for a campaign row, in the campaign store) *before* the request leaves; an answer that
leaves the outcome open marks the call ``unknown``, because a call may be ringing. A 403
``outbound_sip_not_enabled`` (the organisation cannot dial) is logged as an error once per
process, then quietly: every further call gets the same clear ``rejected`` outcome.
"""

from __future__ import annotations

import logging

import httpx

from callserver.calls.outbound import DialFailed, Placement, maybe_placed
from callserver.calls.records import CallRecord
from callserver.engines.live.outbound import (
    CreateRefused,
    CreateUnknown,
    SipTrunk,
    create_body,
    create_session,
)
from callserver.engines.rest import RestObserver
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph

log = logging.getLogger(__name__)

NOT_ENABLED_MESSAGE = (
    "OpenAI refused the outbound call: outbound SIP calling is not enabled for this "
    "organization (403 outbound_sip_not_enabled). Ask OpenAI to enable it; until then no "
    "GPT-Live call can be placed."
)


class LiveDialer:
    """Implements ``calls.outbound.OutboundDialer`` with GPT-Live's own outbound calls."""

    name = "live"

    def __init__(
        self,
        client: httpx.AsyncClient,
        trunk: SipTrunk,
        *,
        timeout_s: float,
        observer: RestObserver | None = None,
    ) -> None:
        self._client = client
        self._trunk = trunk
        self._timeout_s = timeout_s
        self._observer = observer
        self.not_enabled_logged = False

    async def place(
        self, record: CallRecord, built: BuiltGraph, context: CallToolContext
    ) -> Placement:
        info = record.outbound
        assert info is not None
        body = await create_body(
            built,
            context,
            destination=info["to"],
            trunk=self._trunk,
            caller_number=info["from"],
        )
        info["outcome"] = "unknown"  # until the answer says otherwise: a call may be placed
        try:
            session_id = await create_session(
                self._client,
                body,
                timeout_s=self._timeout_s,
                attempt_id=record.call_id,
                observer=self._observer,
            )
        except CreateRefused as exc:
            info.pop("outcome", None)
            if exc.not_enabled:
                info["error_code"] = "outbound_sip_not_enabled"
                if not self.not_enabled_logged:
                    self.not_enabled_logged = True
                    log.error(NOT_ENABLED_MESSAGE, extra={"call_id": record.call_id})
                raise DialFailed("rejected", NOT_ENABLED_MESSAGE) from None
            log.warning(
                "outbound create refused: HTTP %s %s",
                exc.status,
                exc.code or "",
                extra={"call_id": record.call_id},
            )
            outcome = "rejected" if exc.status in (401, 403) else "failed"
            raise DialFailed(outcome, f"OpenAI refused the call: {exc}") from None
        except CreateUnknown as exc:
            raise maybe_placed(record.call_id, "GPT-Live", exc.detail) from None
        info.pop("outcome", None)
        info["placed"] = True
        log.info(
            "outbound session created", extra={"call_id": record.call_id, "session": session_id}
        )
        return Placement(engine_ref=session_id)

    async def cancel(self, record: CallRecord) -> None:
        """Nothing to cancel before the create answered: the session does not exist yet."""
        return None
