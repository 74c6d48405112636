"""The Realtime ``/accept`` body of each graph version, built once and reused per call.

The SDK builds the body from the starting agent (tools, handoffs, session settings: the
same for every call of a graph version) plus the instructions (rendered for each call).
Building it costs more than everything else callserver does before the accept, and it sits
on the ring-window path, so the SDK builds it once per graph version and each call gets a
copy with its own instructions. A graph version is the ``GraphSpec`` a call was built from
(``BuiltGraph.version``): a reload makes new ones, so a stale body is never reused.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from callserver.engines.realtime import sdk
from callserver.graph.context import CallToolContext
from callserver.graph.spec import BuiltGraph

VERSIONS_KEPT = 64
"""Graph versions whose body is kept (graphs in a config, times the reloads still live)."""


class AcceptBodies:
    """Accept bodies by graph version (least recently used dropped past the bound)."""

    def __init__(self, limit: int = VERSIONS_KEPT) -> None:
        self._limit = limit
        self._bodies: OrderedDict[int, tuple[object, dict[str, Any]]] = OrderedDict()

    async def body(self, built: BuiltGraph, context: CallToolContext) -> dict[str, Any]:
        """This call's body. Nested values are shared between calls: read-only (it is
        only serialised into the request)."""
        version = built.version
        if version is None:
            return await self._build(built, context)
        entry = self._bodies.get(id(version))
        if entry is not None and entry[0] is version:
            self._bodies.move_to_end(id(version))
            return {**entry[1], "instructions": str(built.starting_agent.instructions or "")}
        body = await self._build(built, context)
        template = {key: value for key, value in body.items() if key != "instructions"}
        self._bodies[id(version)] = (version, template)  # the version is held: ids stay unique
        while len(self._bodies) > self._limit:
            self._bodies.popitem(last=False)
        return body

    @staticmethod
    async def _build(built: BuiltGraph, context: CallToolContext) -> dict[str, Any]:
        return await sdk.accept_payload(
            agent=built.starting_agent,
            model_name=built.model,
            settings=built.model_settings,
            run_config=built.run_config,
            context=context,
        )
