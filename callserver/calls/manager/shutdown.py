"""Draining and aborting: an instance stops taking calls and lets go of the ones it has."""

from __future__ import annotations

import asyncio

from callserver.calls.manager.state import (
    ABORT_FINALIZE_S,
    TASK_STOP_TIMEOUT_S,
    ManagerState,
    log,
)


class Shutdown(ManagerState):
    """Drain (hand over, let calls finish, hang up the rest) and abort."""

    def begin_drain(self) -> None:
        if not self.draining:
            log.warning("draining: new calls are refused with 503")
        self.draining = True
        self.metrics.set_draining(True)

    def start_drain(self, timeout_s: float) -> None:
        """Begin a drain in the background (admin API): the manager owns the task."""
        if self._drain_task is None:
            self.begin_drain()
            self._drain_task = asyncio.create_task(self._drain_calls(timeout_s), name="drain")

    async def drain(self, timeout_s: float) -> None:
        """Stop taking calls, let live ones finish for ``timeout_s``, then hang them up."""
        self.begin_drain()
        if self.aborting:
            timeout_s = 0.0
        if self.mover is not None and not self.aborting:
            await self.mover.hand_over_all()  # what a peer takes does not wait, nor hang up
        if self._drain_task is not None:
            await asyncio.wait({self._drain_task}, timeout=timeout_s + TASK_STOP_TIMEOUT_S)
            if not self._drain_task.done():
                self._drain_task.cancel()
                await asyncio.gather(self._drain_task, return_exceptions=True)
        await self._drain_calls(timeout_s)
        await self._stop_aux()

    async def _drain_calls(self, timeout_s: float) -> None:
        """Let live calls finish for ``timeout_s``, then hang up the rest."""
        if self._tasks and timeout_s > 0:
            await asyncio.wait(list(self._tasks.values()), timeout=timeout_s)
        if self.aborting:
            return  # abort() ends the calls, within its own bound
        remaining = list(self._tasks)
        if remaining:
            log.warning("drain timeout: hanging up %d call(s)", len(remaining))
            await asyncio.gather(
                *(self.end(call_id, "shutdown", hangup=True) for call_id in remaining),
                return_exceptions=True,
            )

    async def abort(self, timeout_s: float) -> bool:
        """End every live call now (a second shutdown signal): no more waiting for calls.

        Each call goes through :meth:`end` (hang up at OpenAI, record finalised, post-call
        event handed to the outbox). Ends still running after ``timeout_s`` are cancelled:
        cancelling one stops its wait for OpenAI but still finalises the record. Returns
        True if every call was ended within the bound.
        """
        self.begin_drain()
        self.aborting = True
        ends = [
            asyncio.create_task(self.end(call_id, "shutdown", hangup=True), name=f"abort:{call_id}")
            for call_id in list(self._tasks)
        ]
        if not ends:
            return True
        _, pending = await asyncio.wait(ends, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.error("abort: %d call(s) not ended in %.1fs", len(pending), timeout_s)
            await asyncio.wait(pending, timeout=ABORT_FINALIZE_S)
            for task in pending:  # still not done: owned like any aux task from here
                if not task.done():
                    self._aux.add(task)
                    task.add_done_callback(self._aux.discard)
        return not pending

    async def _stop_aux(self) -> None:
        self._stopping.set()
        for task in list(self._aux):
            task.cancel()
        if self._aux:
            await asyncio.wait(self._aux, timeout=TASK_STOP_TIMEOUT_S)
