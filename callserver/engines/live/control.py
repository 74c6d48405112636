"""GPT-Live call control: ``/live/sessions/{session_id}/{accept,reject,refer,hangup}``.

Differences from Realtime that matter here: the accept body wraps the session config in a
top-level ``session`` object; reject *requires* a SIP status (300-699); a decision that lost
the race to another accept or reject (on either API) answers ``decision_already_made``,
which the shared REST layer raises as :class:`~callserver.engines.errors.DecidedElsewhere`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from callserver.engines.errors import CallGone, ControlError
from callserver.engines.rest import DeadlineRest


class LiveControl:
    """Implements ``engines.base.CallControl`` for GPT-Live SIP sessions."""

    def __init__(self, rest: DeadlineRest) -> None:
        self._rest = rest

    async def _post(
        self, session_id: str, action: str, body: dict[str, Any] | None, deadline: float
    ) -> None:
        path = f"/live/sessions/{quote(session_id, safe='')}/{action}"
        await self._rest.post(session_id, path, action, body, deadline=deadline)

    async def accept(self, call_id: str, body: dict[str, Any], *, deadline: float) -> None:
        """Accept with ``{"session": {...}}`` (built by ``engines.live.accept``)."""
        await self._post(call_id, "accept", body, deadline)

    async def reject(self, call_id: str, status_code: int, *, deadline: float) -> None:
        if not 300 <= status_code <= 699:
            raise ControlError("reject", None, f"SIP status {status_code} is not 300-699")
        await self._post(call_id, "reject", {"status_code": status_code}, deadline)

    async def refer(self, call_id: str, target_uri: str, *, deadline: float) -> None:
        if not target_uri.strip():
            raise ControlError("refer", None, "empty transfer target")
        await self._post(call_id, "refer", {"target_uri": target_uri}, deadline)

    async def hangup(self, call_id: str, *, deadline: float) -> bool:
        try:
            await self._post(call_id, "hangup", None, deadline)
        except CallGone:
            return False
        return True
