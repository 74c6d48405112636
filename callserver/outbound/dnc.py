"""Do-not-call lists: numbers no outbound call may dial.

The instance-wide list (``CALLSERVER_DNC_FILE``: one E.164 number per line, ``#`` comments)
applies to every outbound call; a campaign adds its own. Entries that are not E.164 are
reported with their line number when the file is read, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from callserver.graph.outbound_models import is_e164


class DncError(ValueError):
    pass


def normalise(number: str) -> str:
    """``+1 (415) 555-0123`` -> ``+14155550123``: separators people write are ignored."""
    text = number.strip()
    return text[:1] + "".join(ch for ch in text[1:] if ch.isdigit()) if text else text


def read_dnc_file(path: Path) -> frozenset[str]:
    """The numbers of a DNC file; raises DncError naming the first bad line."""
    numbers: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DncError(f"{path}: cannot read: {exc.strerror}") from None
    for index, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        number = normalise(text.split(",", 1)[0])
        if not is_e164(number):
            raise DncError(f"{path}:{index}: {text[:40]!r} is not an E.164 number")
        numbers.add(number)
    return frozenset(numbers)


class DoNotCall:
    """The instance's list; ``blocked`` also checks a campaign's own."""

    def __init__(self, numbers: Iterable[str] = ()) -> None:
        self.numbers = frozenset(normalise(n) for n in numbers)

    def blocked(self, number: str, extra: frozenset[str] = frozenset()) -> bool:
        """``extra``: a campaign's own list, already normalised."""
        key = normalise(number)
        return key in self.numbers or key in extra
