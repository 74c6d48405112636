"""Config errors that point at a file, a line and a key path, all reported at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where it is and what is wrong."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.path}: {self.message}"


class ConfigError(Exception):
    """A config that must not be used. ``issues`` holds every problem found, in file order."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = sorted(issues, key=lambda i: (i.file, i.line, i.path))
        super().__init__("\n".join(str(issue) for issue in self.issues))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'billing'?)`` for the closest choice, or ``""`` when none is close."""
    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if str(word).lower() in lowered:
            close = [lowered[str(word).lower()]]
    return f" (did you mean {close[0]!r}?)" if close else ""


def no_such(kind: str, word: str, choices: Iterable[str]) -> str:
    """``no agent named 'biling' (did you mean 'billing'?)``, listing choices when few."""
    options = sorted(str(c) for c in choices)
    hint = did_you_mean(word, options)
    if not hint and 0 < len(options) <= 8:
        hint = f" (known: {', '.join(options)})"
    return f"no {kind} named {word!r}{hint}"
