"""``{{ caller }}``-style placeholders in instructions and greetings.

Values come from SIP headers, i.e. from whoever placed the call, or (``{{ var.NAME }}``) from
the request that placed an outbound call. They are inserted once, as plain text: never
re-scanned for placeholders, stripped of control characters and newlines (so a value cannot
fake a new paragraph of instructions) and cut to a sane length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from callserver.graph.context import CallInfo
from callserver.graph.errors import did_you_mean

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
NAMES: tuple[str, ...] = (
    "caller", "dialed", "now", "call_id", "graph", "header.<Name>", "var.<NAME>",
)  # fmt: skip
MAX_VALUE_CHARS = 200
MISSING = "unknown"


@dataclass(frozen=True, slots=True)
class PlaceholderIssue:
    """An unknown placeholder and the 1-based line (within the text) where it appears."""

    line: int
    message: str


def check_template(text: str, variables: Collection[str] = ()) -> list[PlaceholderIssue]:
    """Every placeholder in ``text`` that cannot be filled; ``variables``: the declared ones."""
    issues: list[PlaceholderIssue] = []
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        if name.startswith("header."):
            header = name[len("header.") :]
            if not _HEADER_NAME.match(header):
                issues.append(PlaceholderIssue(line, f"invalid header name in {{{{ {name} }}}}"))
        elif name.startswith("var."):
            var = name[len("var.") :]
            if var not in variables:
                hint = did_you_mean(var, variables) or " (declare it under variables:)"
                issues.append(PlaceholderIssue(line, f"undeclared variable {{{{ {name} }}}}{hint}"))
        elif name not in NAMES:
            hint = did_you_mean(name, NAMES[:-2])
            known = ", ".join(NAMES)
            issues.append(
                PlaceholderIssue(
                    line, f"unknown placeholder {{{{ {name} }}}}{hint} (known: {known})"
                )
            )
    for stray in re.finditer(r"\{\{|\}\}", _PLACEHOLDER.sub("", text)):
        line = text.count("\n", 0, stray.start()) + 1
        issues.append(PlaceholderIssue(line, "unbalanced '{{' or '}}'"))
        break
    return issues


def clean_value(value: str | None) -> str:
    """Make an untrusted value safe to put into a prompt as plain text."""
    if value is None or not value.strip():
        return MISSING
    text = _UNSAFE.sub(" ", value).strip()
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "..."
    return text


def format_now(moment: datetime, timezone: str) -> str:
    """``Friday 27 November 2026, 16:55 (Europe/Paris)``: a weekday helps with bookings."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%A %d %B %Y, %H:%M} ({timezone})"


def renderer(
    info: CallInfo, *, graph: str, timezone: str, defaults: Mapping[str, str | None] | None = None
) -> Callable[[str], str]:
    """A function filling the placeholders of a (load-time checked) template for one call.

    ``defaults``: the graph's variable defaults, used when the call brings no value."""
    fixed = {
        "caller": clean_value(info.caller),
        "dialed": clean_value(info.dialed),
        "call_id": clean_value(info.call_id),
        "graph": graph,
        "now": format_now(info.received_at, timezone),
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("header."):
            return clean_value(info.header(name[len("header.") :]))
        if name.startswith("var."):
            var = name[len("var.") :]
            given = info.variables.get(var)
            return clean_value(given if given else (defaults or {}).get(var))
        return fixed.get(name, MISSING)

    def render(text: str) -> str:
        return _PLACEHOLDER.sub(value, text)

    return render
