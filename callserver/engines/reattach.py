"""Reattaching to a call whose control connection dropped, for every engine.

The phone audio flows between the carrier and OpenAI; callserver only holds the control
connection (Realtime websocket, Live sideband), and closing it does not end the call. So a
dropped connection is not a hangup until OpenAI says the call is gone: reconnect to the
same call with jittered exponential backoff (tenacity) until it works, until OpenAI refuses
because the call no longer exists (404: the caller hung up meanwhile), or until the budget
is spent (then the call ends ``control_lost`` and is hung up, so no caller is left talking to
an agent whose tools no longer run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from callserver.engines.base import ControlEvent, ControlObserver, ReattachPolicy, handshake_status

__all__ = [
    "CallEnded",
    "ControlEvent",
    "ControlLost",
    "ControlObserver",
    "ReattachPolicy",
    "Regain",
    "reconnect",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

FINAL_STATUSES = frozenset({400, 401, 403, 404, 410})
"""Refusals that another attempt will not change: the call is gone (404/410) or we may not
attach to it (bad request, key)."""


class CallEnded(Exception):
    """Reattach refused with 404/410: the call ended while we were away."""


class ControlLost(Exception):
    """Reattach did not succeed within the budget (or was refused for good)."""


def _retryable(exc: BaseException) -> bool:
    return handshake_status(exc) not in FINAL_STATUSES


async def reconnect(
    connect: Callable[[], Awaitable[T]],
    policy: ReattachPolicy,
    *,
    call_id: str,
    started: float | None = None,
) -> T:
    """``connect()`` again until it works; raises :class:`CallEnded` or :class:`ControlLost`.

    ``started`` (monotonic) is when control was lost: the budget counts from there.
    """
    began = started if started is not None else time.monotonic()
    remaining = max(policy.budget_s - (time.monotonic() - began), 0.0)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "reattach attempt %d failed: %s",
            state.attempt_number,
            type(exc).__name__,
            extra={"call_id": call_id},
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_delay(remaining),
        wait=wait_random_exponential(multiplier=policy.initial_s, max=policy.max_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await connect()
    except Exception as exc:
        status = handshake_status(exc)
        if status in (404, 410):
            raise CallEnded(f"HTTP {status}") from None
        raise ControlLost(f"{type(exc).__name__}: {str(exc)[:120]}") from None
    raise ControlLost("no attempt made")  # pragma: no cover - tenacity always tries once


class Regain:
    """One control connection's reattach bookkeeping, the same for every engine: tell the
    observer (metrics, call record, cassette) when control was lost, is back or is gone for
    good, and log it once, with the gap."""

    def __init__(self, observer: ControlObserver | None, *, call_id: str, what: str) -> None:
        self.observer = observer
        self._call_id = call_id
        self._what = what
        self._lost_at = 0.0

    async def connect_again(self, connect: Callable[[], Awaitable[T]], policy: ReattachPolicy) -> T:
        """:func:`reconnect`, reported; re-raises :class:`CallEnded` / :class:`ControlLost`."""
        self._lost_at = time.monotonic()
        self.notify("lost", 0.0)
        extra = {"call_id": self._call_id}
        log.warning("%s dropped: reattaching", self._what, extra=extra)
        try:
            return await reconnect(connect, policy, call_id=self._call_id, started=self._lost_at)
        except CallEnded:
            self.notify("gone", self.gap_s())
            raise
        except ControlLost as exc:
            log.error("%s reattach failed: %s", self._what, exc, extra=extra)
            self.notify("given_up", self.gap_s())
            raise

    def back(self) -> float:
        """The new connection is in use: report and return the gap in seconds."""
        gap = self.gap_s()
        self.notify("back", gap)
        log.info("%s reattached after %.2fs", self._what, gap, extra={"call_id": self._call_id})
        return gap

    def gap_s(self) -> float:
        return time.monotonic() - self._lost_at

    def notify(self, event: ControlEvent, gap_s: float) -> None:
        if self.observer is None:
            return
        try:
            self.observer(event, gap_s)
        except Exception:
            log.exception("control observer failed", extra={"call_id": self._call_id})
