"""Calling windows: the hours, in the callee's own time zone, when a campaign may call.

``{"start": "09:00", "end": "20:00", "days": ["mon", ..., "fri"]}``: a row is dialed only
while its local time (the row's ``timezone``, else the campaign's) is inside the window;
otherwise it waits for the next opening. ``end`` before ``start`` spans midnight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclasses.dataclass(frozen=True, slots=True)
class CallingWindow:
    start: dt.time
    end: dt.time
    days: frozenset[int] = frozenset(range(7))
    """Weekdays (0 = Monday) on which the window opens."""

    def as_json(self) -> dict[str, object]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "days": [DAYS[d] for d in sorted(self.days)],
        }

    def _open_on(self, local: dt.datetime) -> bool:
        clock = local.time()
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # spans midnight: the part after midnight belongs to the previous day's window
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days

    def is_open(self, now: float, timezone: str) -> bool:
        return self._open_on(dt.datetime.fromtimestamp(now, ZoneInfo(timezone)))

    def next_open(self, now: float, timezone: str) -> float:
        """The first moment at or after ``now`` when the window is open (epoch seconds)."""
        zone = ZoneInfo(timezone)
        local = dt.datetime.fromtimestamp(now, zone)
        if self._open_on(local):
            return now
        for offset in range(0, 9):
            day = (local + dt.timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opening = dt.datetime.combine(day, self.start, tzinfo=zone)
            if opening.timestamp() >= now:
                return opening.timestamp()
        return now + 86400.0  # unreachable with at least one day


def parse_clock(value: object) -> dt.time:
    if not isinstance(value, str):
        raise ValueError("must be a time of day such as 09:00")
    try:
        return dt.time.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value[:20]!r} is not a time of day such as 09:00") from None


def parse_window(value: object) -> CallingWindow:
    """A window from JSON; ValueError (with the key in front) when it is wrong."""
    if not isinstance(value, dict):
        raise ValueError('must be {"start": "09:00", "end": "20:00", "days": ["mon", ...]}')
    unknown = [k for k in value if k not in ("start", "end", "days")]
    if unknown:
        raise ValueError(f"{str(unknown[0])[:20]}: unknown key (start, end, days)")
    try:
        start = parse_clock(value.get("start"))
    except ValueError as exc:
        raise ValueError(f"start: {exc}") from None
    try:
        end = parse_clock(value.get("end"))
    except ValueError as exc:
        raise ValueError(f"end: {exc}") from None
    if start == end:
        raise ValueError("start and end are the same time: the window would never open")
    days_value = value.get("days", list(DAYS))
    if not isinstance(days_value, list) or not days_value:
        raise ValueError("days: a non-empty list such as [mon, tue, wed, thu, fri]")
    days: set[int] = set()
    for day in days_value:
        name = str(day).strip().lower()[:3]
        if name not in DAYS:
            raise ValueError(f"days: {str(day)[:20]!r} is not a weekday ({', '.join(DAYS)})")
        days.add(DAYS.index(name))
    return CallingWindow(start, end, frozenset(days))
