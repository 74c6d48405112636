"""A campaign request, validated whole: every error with its row and column, or nothing.

``{"graph", "rows": [{"to", "variables", "timezone"?}], "calls_per_minute",
"max_concurrent", "window"?, "timezone"?, "retry"?, "do_not_call"?, "name"?, "from"?,
"dialer"?}``. A campaign with any error is refused as a whole (nothing is stored, nothing
dialed). Rows whose number is on a do-not-call list, or repeats a number of an earlier row,
are kept but skipped (``dnc``, ``duplicate``) and reported, never dialed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callserver.graph.errors import did_you_mean
from callserver.graph.spec import GraphSpec
from callserver.outbound.campaigns.retry import RetryPolicy, parse_retry
from callserver.outbound.campaigns.window import CallingWindow, parse_window
from callserver.outbound.dnc import DoNotCall, normalise
from callserver.outbound.request import DIALERS, RequestError, graph_named, phone, variables_for

MAX_ROWS = 100_000
MAX_ERRORS = 100
MAX_CALLS_PER_MINUTE = 6000
MAX_CONCURRENT = 1000
TOP_KEYS = (
    "graph", "rows", "calls_per_minute", "max_concurrent", "window", "timezone", "retry",
    "do_not_call", "name", "from", "dialer",
)  # fmt: skip
ROW_KEYS = ("to", "variables", "timezone")


class CampaignError(ValueError):
    """Everything wrong with a campaign: ``errors`` are {row, column, message} (row None for
    a campaign-level field)."""

    def __init__(self, errors: list[dict[str, Any]], total: int | None = None) -> None:
        self.errors = errors
        self.total = total if total is not None else len(errors)
        first = errors[0]
        where = f"row {first['row']} " if first.get("row") else ""
        super().__init__(
            f"{self.total} error(s); first: {where}{first['column']}: {first['message']}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "error": f"campaign refused, nothing dialed: {self.total} error(s)",
            "errors": self.errors,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class CampaignSpec:
    """How a campaign dials (its rows are stored apart)."""

    graph: str
    calls_per_minute: float
    max_concurrent: int
    timezone: str = "UTC"
    window: CallingWindow | None = None
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    do_not_call: frozenset[str] = frozenset()
    name: str | None = None
    from_: str | None = None
    dialer: str | None = None

    @property
    def interval_s(self) -> float:
        """Seconds between two dials at the campaign's pace."""
        return 60.0 / self.calls_per_minute

    def as_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "calls_per_minute": self.calls_per_minute,
            "max_concurrent": self.max_concurrent,
            "timezone": self.timezone,
            "window": self.window.as_json() if self.window else None,
            "retry": self.retry.as_json(),
            "do_not_call": sorted(self.do_not_call),
            "name": self.name,
            "from": self.from_,
            "dialer": self.dialer,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignSpec:
        """Back from storage (already validated once)."""
        return cls(
            graph=data["graph"],
            calls_per_minute=float(data["calls_per_minute"]),
            max_concurrent=int(data["max_concurrent"]),
            timezone=data.get("timezone") or "UTC",
            window=parse_window(data["window"]) if data.get("window") else None,
            retry=parse_retry(data.get("retry") or None),
            do_not_call=frozenset(data.get("do_not_call") or ()),
            name=data.get("name"),
            from_=data.get("from"),
            dialer=data.get("dialer"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RowSpec:
    """One row as submitted (``row`` is 1-based), and why it is skipped, if it is."""

    row: int
    to: str
    variables: Mapping[str, str]
    timezone: str | None = None
    skip: str | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: int | None, column: str, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append({"row": row, "column": column, "message": message})


def _zone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("an IANA time zone such as America/New_York")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value[:40]!r} (e.g. America/New_York)") from None
    return value


def _number(value: Any, low: float, high: float, whole: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a number from {low:g} to {high:g}")
    if whole and int(value) != value:
        raise ValueError("a whole number")
    if not low <= value <= high:
        raise ValueError(f"from {low:g} to {high:g}")
    return float(value)


def parse_campaign(
    body: Any, graphs: Mapping[str, GraphSpec], dnc: DoNotCall
) -> tuple[CampaignSpec, list[RowSpec]]:
    """The campaign and its rows; CampaignError listing every problem (up to 100)."""
    errors = _Errors()
    if not isinstance(body, Mapping):
        errors.add(None, "body", 'must be a JSON object: {"graph", "rows", ...}')
        raise CampaignError(errors.items)
    for key in body:
        if key not in TOP_KEYS:
            errors.add(None, str(key)[:40], f"unknown field{did_you_mean(str(key), TOP_KEYS)}")
    graph: GraphSpec | None = None
    try:
        graph = graph_named(graphs, body.get("graph"))
    except RequestError as exc:
        errors.add(None, exc.field, exc.message)
    values: dict[str, Any] = {}
    checks = {
        "calls_per_minute": lambda v: _number(v, 0.1, MAX_CALLS_PER_MINUTE, False),
        "max_concurrent": lambda v: int(_number(v, 1, MAX_CONCURRENT, True)),
    }
    for key, check in checks.items():
        if key not in body:
            errors.add(None, key, "required")
            continue
        try:
            values[key] = check(body[key])
        except ValueError as exc:
            errors.add(None, key, str(exc))
    timezone = graph.timezone if graph is not None else "UTC"
    optional: dict[str, Any] = {
        "timezone": _zone,
        "window": parse_window,
        "retry": parse_retry,
        "name": _name,
        "from": lambda v: phone(v, "from"),
        "dialer": _dialer,
    }
    for key, parse in optional.items():
        if body.get(key) is None:
            continue
        try:
            values[key] = parse(body[key])
        except RequestError as exc:
            errors.add(None, key, exc.message)
        except ValueError as exc:
            errors.add(None, key, str(exc))
    own_dnc = _do_not_call(body.get("do_not_call"), errors)
    rows = body.get("rows")
    specs: list[RowSpec] = []
    if not isinstance(rows, list) or not rows:
        errors.add(None, "rows", "required: a non-empty list of {to, variables, timezone}")
    elif len(rows) > MAX_ROWS:
        errors.add(None, "rows", f"at most {MAX_ROWS} rows per campaign")
    elif graph is not None:
        specs = _rows(rows, graph, dnc, own_dnc, errors)
    if errors.total:
        raise CampaignError(errors.items, errors.total)
    assert graph is not None
    spec = CampaignSpec(
        graph=graph.name,
        calls_per_minute=values["calls_per_minute"],
        max_concurrent=values["max_concurrent"],
        timezone=values.get("timezone", timezone),
        window=values.get("window"),
        retry=values.get("retry", RetryPolicy()),
        do_not_call=own_dnc,
        name=values.get("name"),
        from_=values.get("from"),
        dialer=values.get("dialer"),
    )
    return spec, specs


def _rows(
    rows: list[Any], graph: GraphSpec, dnc: DoNotCall, own: frozenset[str], errors: _Errors
) -> list[RowSpec]:
    specs: list[RowSpec] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            errors.add(index, "row", "must be an object {to, variables, timezone}")
            continue
        bad = [k for k in row if k not in ROW_KEYS]
        for key in bad:
            hint = did_you_mean(str(key), ROW_KEYS) or " (to, variables, timezone)"
            errors.add(index, str(key)[:40], f"unknown column{hint}")
        try:
            to = phone(row.get("to"), "to")
        except RequestError as exc:
            errors.add(index, "to", exc.message)
            to = None
        try:
            variables = variables_for(graph, row.get("variables"))
        except RequestError as exc:
            errors.add(index, exc.field, exc.message)
            variables = {}
        zone = None
        if row.get("timezone") not in (None, ""):
            try:
                zone = _zone(row["timezone"])
            except ValueError as exc:
                errors.add(index, "timezone", str(exc))
        if to is None or bad:
            continue
        key = normalise(to)
        skip = None
        if dnc.blocked(to, own):
            skip = "dnc"
        elif key in seen:
            skip = "duplicate"
        else:
            seen[key] = index
        specs.append(RowSpec(index, to, variables, zone, skip))
    return specs


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise ValueError("a name of 1-200 characters")
    return value


def _dialer(value: Any) -> str:
    if value not in DIALERS:
        raise ValueError(f"one of {', '.join(DIALERS)}")
    return str(value)


def _do_not_call(value: Any, errors: _Errors) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        errors.add(None, "do_not_call", "a list of E.164 numbers")
        return frozenset()
    numbers: set[str] = set()
    for index, number in enumerate(value):
        try:
            numbers.add(normalise(phone(number, "do_not_call")))
        except RequestError as exc:
            errors.add(None, f"do_not_call[{index}]", exc.message)
    return frozenset(numbers)
