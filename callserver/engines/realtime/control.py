"""Realtime call control: ``/realtime/calls/{call_id}/{accept,reject,refer,hangup}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from callserver.engines.errors import CallGone
from callserver.engines.rest import DeadlineRest


class RealtimeControl:
    """Implements ``engines.base.CallControl`` for the Realtime API."""

    def __init__(self, rest: DeadlineRest) -> None:
        self._rest = rest

    async def _post(
        self, call_id: str, action: str, body: dict[str, Any] | None, deadline: float
    ) -> None:
        path = f"/realtime/calls/{quote(call_id, safe='')}/{action}"
        await self._rest.post(call_id, path, action, body, deadline=deadline)

    async def accept(self, call_id: str, body: dict[str, Any], *, deadline: float) -> None:
        """Accept a ringing call with a full (flat) session config."""
        await self._post(call_id, "accept", body, deadline)

    async def reject(self, call_id: str, status_code: int, *, deadline: float) -> None:
        """Decline a ringing call with a SIP status (486 busy, 603 decline, ...)."""
        await self._post(call_id, "reject", {"status_code": status_code}, deadline)

    async def refer(self, call_id: str, target_uri: str, *, deadline: float) -> None:
        """Cold-transfer a live call to a ``tel:`` or ``sip:`` URI (SIP REFER)."""
        await self._post(call_id, "refer", {"target_uri": target_uri}, deadline)

    async def hangup(self, call_id: str, *, deadline: float) -> bool:
        try:
            await self._post(call_id, "hangup", None, deadline)
        except CallGone:
            return False
        return True
