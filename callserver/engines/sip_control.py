"""Call control over REST, the same four verbs on both engines: accept, reject, refer and
hang up ``{prefix}/{call_id}/{verb}``. Engines differ in the prefix and the accept body's
shape (built elsewhere), not in how the verbs are sent, retried or refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from callserver.engines.errors import CallGone, ControlError
from callserver.engines.rest import DeadlineRest


class SipCallControl:
    """Implements ``engines.base.CallControl`` for the calls under ``prefix``."""

    prefix: str

    def __init__(self, rest: DeadlineRest) -> None:
        self._rest = rest

    async def _post(
        self, call_id: str, action: str, body: dict[str, Any] | None, deadline: float
    ) -> None:
        path = f"{self.prefix}/{quote(call_id, safe='')}/{action}"
        await self._rest.post(call_id, path, action, body, deadline=deadline)

    async def accept(self, call_id: str, body: dict[str, Any], *, deadline: float) -> None:
        """Answer a ringing call with the engine's accept body."""
        await self._post(call_id, "accept", body, deadline)

    async def reject(self, call_id: str, status_code: int, *, deadline: float) -> None:
        """Decline a ringing call with a SIP final status (486 busy, 603 decline, ...).
        Refused here, without a request, when it is not a 3xx-6xx status."""
        if not 300 <= status_code <= 699:
            raise ControlError("reject", None, f"SIP status {status_code} is not 300-699")
        await self._post(call_id, "reject", {"status_code": status_code}, deadline)

    async def refer(self, call_id: str, target_uri: str, *, deadline: float) -> None:
        """Cold-transfer a live call to a ``tel:`` or ``sip:`` URI (SIP REFER)."""
        if not target_uri.strip():
            raise ControlError("refer", None, "empty transfer target")
        await self._post(call_id, "refer", {"target_uri": target_uri}, deadline)

    async def hangup(self, call_id: str, *, deadline: float) -> bool:
        """End the call; False if it had already ended (404), which is not an error here."""
        try:
            await self._post(call_id, "hangup", None, deadline)
        except CallGone:
            return False
        return True
