"""Reading cassettes back: strict about structure, honest about truncation.

A malformed line is an error naming the file and line number (someone edited the file, or
it is not a cassette). A missing ``closed`` footer or a torn last line is *not* an error: it
is what a crashed process leaves behind, and the reader says so with ``truncated`` so a
replay can report it instead of passing a call that was never fully recorded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from callserver.records.cassette import FORMAT, VERSION

__all__ = ["Cassette", "CassetteError", "Entry", "read_cassette"]

KNOWN_KINDS = frozenset(
    {
        "webhook",
        "rest",
        "ws_out",
        "ws_in",
        "tool",
        "handoff",
        "guardrail",
        "control",
        "end",
        "closed",
    }
)


class CassetteError(ValueError):
    """The file is not a readable cassette; ``line`` is 1-based (0 = the file itself)."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One recorded line: its ``kind``, time offset ``t`` and the rest of its fields."""

    line: int
    kind: str
    t: float
    data: dict[str, Any]


@dataclasses.dataclass(slots=True)
class Cassette:
    path: Path
    header: dict[str, Any]
    entries: list[Entry]
    footer: dict[str, Any] | None
    """The ``closed`` line, or None when the recording was cut short."""
    torn_last_line: bool = False
    """The last line was incomplete (no newline / invalid JSON): a crash mid-write."""

    @property
    def call_id(self) -> str:
        return str(self.header.get("call_id", "?"))

    @property
    def graph(self) -> str | None:
        return self.header.get("graph")

    @property
    def truncated(self) -> bool:
        """The recording did not end normally: no footer, a torn line, or complete=false."""
        return self.footer is None or self.torn_last_line or not self.footer.get("complete")

    def truncation_reason(self) -> str | None:
        if self.footer is None:
            torn = " (last line torn)" if self.torn_last_line else ""
            return f"no closing line{torn}: the recording process stopped mid-call"
        if not self.footer.get("complete"):
            return "closed incomplete: the process went down abnormally during the call"
        return None

    def of(self, *kinds: str) -> Iterator[Entry]:
        return (e for e in self.entries if e.kind in kinds)

    def first(self, kind: str) -> Entry | None:
        return next(self.of(kind), None)


def read_cassette(path: Path | str) -> Cassette:
    """Parse a cassette file; raises :class:`CassetteError` with the offending line number."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CassetteError(path, 0, f"cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise CassetteError(path, 0, "empty file: not a cassette")
    lines = raw.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines.pop()
    header: dict[str, Any] | None = None
    entries: list[Entry] = []
    footer: dict[str, Any] | None = None
    torn = False
    for number, blob in enumerate(lines, start=1):
        is_last = number == len(lines)
        try:
            value = json.loads(blob)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if is_last and not ends_with_newline and number > 1:
                torn = True  # the process died while writing this line
                break
            raise CassetteError(path, number, f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise CassetteError(path, number, "a cassette line must be a JSON object")
        if header is None:
            header = _check_header(path, number, value)
            continue
        if footer is not None:
            raise CassetteError(path, number, "line after the closing line")
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in KNOWN_KINDS:
            raise CassetteError(path, number, f"unknown or missing kind: {kind!r}")
        t = value.get("t")
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise CassetteError(path, number, f"{kind} line without a numeric 't'")
        if kind == "closed":
            footer = value
            continue
        _check_fields(path, number, kind, value)
        data = {k: v for k, v in value.items() if k not in ("kind", "t")}
        entries.append(Entry(number, kind, float(t), data))
    assert header is not None
    return Cassette(path, header, entries, footer, torn)


_REQUIRED: dict[str, tuple[str, ...]] = {
    "webhook": ("body",),
    "rest": ("action",),
    "ws_out": ("event",),
    "ws_in": ("event",),
    "tool": ("name",),
    "end": ("reason",),
}


def _check_fields(path: Path, number: int, kind: str, value: dict[str, Any]) -> None:
    for field in _REQUIRED.get(kind, ()):
        if field not in value:
            raise CassetteError(path, number, f"{kind} line without {field!r}")
    if kind in ("ws_in", "ws_out") and not isinstance(value["event"], dict):
        raise CassetteError(path, number, f"{kind} event must be a JSON object")


def _check_header(path: Path, number: int, value: dict[str, Any]) -> dict[str, Any]:
    if value.get("format") != FORMAT:
        raise CassetteError(path, number, f"not a cassette header (format != {FORMAT!r})")
    version = value.get("version")
    if version != VERSION:
        raise CassetteError(
            path, number, f"cassette version {version!r} is not supported (this reads {VERSION})"
        )
    return value
