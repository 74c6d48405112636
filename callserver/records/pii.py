"""Personal data in transcripts: card numbers, phone numbers, e-mail addresses, custom regexes.

A transcript leaves the process twice: in post-call events (to the operator's backend) and in
the analysis request (to OpenAI). What callers say is unpredictable, so operators list what
to hide (``CALLSERVER_REDACT_TRANSCRIPT`` for every graph, a graph's ``redact:``), and each
match is replaced by a label (``[card]``) so readers and the analysis model still know that
something was said there. Cassettes are not touched: they follow the recording settings.

Matching is on transcribed text, so it catches what speech-to-text writes as digits or
addresses; numbers spoken as words ("four one five...") are not recognised.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable

from callserver.graph.analysis_models import REDACT_KINDS, RedactionRule
from callserver.records.redaction import Redactor

LABELS = {"card": "[card]", "phone": "[phone]", "email": "[email]"}

_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
"""13 to 19 digits, spaces or dashes between: card numbers, checksum or not (speech-to-text
gets digits wrong, and a card number one digit off is still someone's card number)."""
_PHONE = re.compile(r"(?<![\w+])(?:\+\s?)?(?:\(\d{1,4}\)[\s.-]?)?\d(?:[\s.()-]{0,2}\d){6,16}(?!\w)")
_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    # as speech-to-text writes it: "jane dot doe at example dot com"
    r"|\b[A-Za-z0-9._%+-]+(?:\s+dot\s+[A-Za-z0-9_-]+)*\s+at\s+[A-Za-z0-9-]+"
    r"(?:\s+dot\s+[A-Za-z0-9-]+)*\s+dot\s+(?:com|net|org|edu|gov|io|co|uk|us|ca|de|fr|es|it|nl|au)\b",
    re.IGNORECASE,
)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_phone(match: str) -> bool:
    """7 to 15 digits (E.164 allows 15) that are not a date such as 2026-12-01."""
    return 7 <= len(_digits(match)) <= 15 and not _DATE.match(match.strip())


@dataclasses.dataclass(frozen=True, slots=True)
class PatternRule:
    """Replace each match of ``regex`` (for which ``check`` holds) by ``label``."""

    regex: re.Pattern[str]
    label: str
    check: Callable[[str], bool] | None = None

    def apply(self, text: str) -> str:
        if self.check is None:
            return self.regex.sub(self.label, text)
        check = self.check
        return self.regex.sub(lambda m: self.label if check(m.group()) else m.group(), text)


_BUILTIN: dict[str, PatternRule] = {
    "card": PatternRule(_CARD, LABELS["card"]),
    "phone": PatternRule(_PHONE, LABELS["phone"], _is_phone),
    "email": PatternRule(_EMAIL, LABELS["email"]),
}
assert set(_BUILTIN) == set(REDACT_KINDS)


def text_rules(rules: Iterable[RedactionRule]) -> list[PatternRule]:
    """Built-in kinds first, in a fixed order (a card number is not then taken for a phone
    number), then custom patterns in the order written."""
    wanted = list(dict.fromkeys(rules))
    kinds = {r.kind for r in wanted}
    out = [_BUILTIN[kind] for kind in REDACT_KINDS if kind in kinds]
    out.extend(PatternRule(re.compile(r.pattern), r.label) for r in wanted if r.kind == "custom")
    return out


def kinds(names: Iterable[str]) -> tuple[RedactionRule, ...]:
    """Rules for built-in kinds by name (the setting); unknown names raise ValueError."""
    out = []
    for name in names:
        if name not in REDACT_KINDS:
            raise ValueError(f"unknown kind {name!r} (kinds: {', '.join(REDACT_KINDS)})")
        out.append(RedactionRule(name))  # type: ignore[arg-type]
    return tuple(out)


def transcript_redactor(rules: Iterable[RedactionRule], secrets: Iterable[str] = ()) -> Redactor:
    """A :class:`Redactor` for transcripts: service secrets (never sent anywhere) plus
    ``rules``. Without rules it still removes secrets, which costs one regex per turn."""
    return Redactor(secrets=secrets, sensitive_keys=(), rules=text_rules(rules))
