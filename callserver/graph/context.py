"""What an agent graph may know about, and ask of, the call it runs on.

The graph layer sits below the calls layer, so it cannot import the call manager. Instead the
calls layer hands every tool a `CallToolContext` (the SDK's run context) whose `controls` object
implements `CallControls`. Built-in tools (`end_call`, `transfer_call`) and user tools reach
the call only through that protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class CallInfo:
    """The facts of one call that routing and placeholders may use.

    All values come from SIP headers (or an outbound call's request) and are untrusted: they
    may be used for matching and for filling instruction placeholders, never as code, paths
    or URLs.
    """

    call_id: str
    caller: str | None
    """User part of the From URI, e.g. ``+14255551212``."""
    dialed: str | None
    """User part of the To URI, e.g. ``+18005551212``."""
    sip_headers: Sequence[tuple[str, str]] = ()
    """Every SIP header as delivered: order and repeats kept."""
    received_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Values an outbound call was placed with (``{{ var.NAME }}``); empty for incoming."""

    def header(self, name: str) -> str | None:
        """First value of a SIP header, matched case-insensitively."""
        lname = name.lower()
        for key, value in self.sip_headers:
            if key.lower() == lname:
                return value
        return None


class CallControls(Protocol):
    """Actions a tool may request on its call. Implemented by the calls layer."""

    async def request_end(self, reason: str, *, after_response: bool = True) -> None:
        """End the call. With ``after_response`` the current response (e.g. a goodbye) is
        allowed to finish first, then the call is hung up."""

    async def request_transfer(self, target_uri: str, *, reason: str = "transfer") -> None:
        """Cold-transfer the call (SIP REFER to ``tel:``/``sip:`` target), then end it."""


@dataclasses.dataclass(slots=True)
class CallToolContext:
    """The run context object every tool of a call receives (``ctx.context``)."""

    call: CallInfo
    graph: str
    controls: CallControls
