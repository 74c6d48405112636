"""What a cassette says about the client events it recorded, for reports in operator terms:
which agent a session config belongs to, and which guardrail a cancel came from (and how
long after the server event before it).

A replay compares events; an operator thinks in agents, tools and guardrails. The cassette
records handoffs (``from``/``to`` agent), tool runs and guardrail trips (with the agent)
next to the websocket frames, so those names can be put back on the frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from callserver.engines.live.model import STOP_SPEAKING
from callserver.records.cassette_reader import Cassette, Entry

__all__ = ["GuardrailCancel", "Story", "read_story"]

GUARDRAIL_MESSAGE = "guardrail triggered: "
"""How the agents SDK tells the model that a guardrail cut its response off."""


@dataclasses.dataclass(frozen=True, slots=True)
class GuardrailCancel:
    """A recorded client event a guardrail trip caused (``response.cancel`` and the note)."""

    guardrail: str
    """``guardrail no_passwords``, or ``an output guardrail of agent X`` if unnamed."""
    delay_s: float
    """Recorded time from the last server event before it (what tripped it) to it."""


@dataclasses.dataclass(slots=True)
class Story:
    start_agent: str | None
    """The agent the call started with (the accept body's session is its)."""
    agents: dict[int, str]
    """``Entry.line`` of every recorded ``session.update`` -> the agent it configures."""
    guardrails: dict[int, GuardrailCancel]
    """``Entry.line`` of client events a guardrail trip caused -> which one, and when."""


def read_story(cassette: Cassette, start_agent: str | None = None) -> Story:
    """Read the agent timeline and guardrail trips; ``start_agent`` is the fallback for a
    cassette that names no agent (no handoff, tool or guardrail)."""
    entries = cassette.entries
    named = [e for e in entries if e.kind in ("handoff", "tool", "guardrail")]
    if named:
        first = named[0]
        start_agent = str(first.data.get("from" if first.kind == "handoff" else "agent"))
    story = Story(start_agent, {}, {})
    current = start_agent
    last_server_t = 0.0
    for index, entry in enumerate(entries):
        if entry.kind == "handoff":
            current = str(entry.data.get("to"))
        elif entry.kind == "ws_in":
            last_server_t = entry.t
        elif entry.kind == "ws_out":
            event = entry.data.get("event") or {}
            following = _next_of(entries, index, ("ws_in", "handoff", "guardrail"))
            if event.get("type") == "session.update":
                # Sent right before its handoff record (no server event in between): the
                # session of the agent handed to.
                to = following.data.get("to") if following and following.kind == "handoff" else None
                story.agents[entry.line] = str(to) if to else str(current)
            elif _guardrail_shaped(event) and following and following.kind == "guardrail":
                names = _names(entries[index : entries.index(following)])
                agent = following.data.get("agent") or current
                label = f"guardrail {names}" if names else f"an output guardrail of agent {agent}"
                story.guardrails[entry.line] = GuardrailCancel(label, entry.t - last_server_t)
    return story


def _next_of(entries: Sequence[Entry], index: int, kinds: tuple[str, ...]) -> Entry | None:
    return next((e for e in entries[index + 1 :] if e.kind in kinds), None)


def _guardrail_shaped(event: dict[str, object]) -> bool:
    """Realtime cancels the response; GPT-Live is told to stop (an instructions append);
    both then get the "guardrail triggered" note."""
    if event.get("type") == "response.cancel" or bool(_note(event)):
        return True
    content = event.get("content")
    return (
        event.get("type") == "session.instructions.append"
        and isinstance(content, str)
        and content.startswith(STOP_SPEAKING[:24])
    )


def _note(event: dict[str, object]) -> str:
    """The text of a "guardrail triggered: ..." message item, or ''."""
    item = event.get("item")
    if event.get("type") not in ("conversation.item.create", "response.item.create"):
        return ""
    if not isinstance(item, dict):
        return ""
    for part in item.get("content") or []:
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str) and text.startswith(GUARDRAIL_MESSAGE):
            return text[len(GUARDRAIL_MESSAGE) :]
    return ""


def _names(entries: Sequence[Entry]) -> str:
    for entry in entries:
        if entry.kind == "ws_out":
            names = _note(entry.data.get("event") or {})
            if names:
                return names
    return ""
