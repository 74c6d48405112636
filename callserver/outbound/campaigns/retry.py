"""Retry policy per outcome: which unanswered calls are tried again, how often, how soon.

``{"busy": {"max_attempts": 3, "backoff": "10m"}, "no_answer": {...}, "failed": {...},
"voicemail": {...}}``: after attempt *n* ended with that outcome, the row is tried again
``backoff * multiplier**(n-1)`` later, until ``max_attempts`` attempts were made. ``unknown``
(a call may have been placed), ``rejected``, ``completed`` are never retried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from callserver.graph.fields import parse_duration

RETRYABLE = ("busy", "no_answer", "failed", "voicemail")
MAX_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True, slots=True)
class RetryRule:
    max_attempts: int
    backoff_s: float
    multiplier: float = 2.0

    def as_json(self) -> dict[str, object]:
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff_s,
            "multiplier": self.multiplier,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    rules: Mapping[str, RetryRule] = dataclasses.field(default_factory=dict)

    def retry_at(self, outcome: str, attempts: int, now: float) -> float | None:
        """When to try again after ``attempts`` attempts ended in ``outcome``; None: never."""
        rule = self.rules.get(outcome)
        if rule is None or attempts >= rule.max_attempts:
            return None
        return now + rule.backoff_s * rule.multiplier ** max(attempts - 1, 0)

    def as_json(self) -> dict[str, object]:
        return {outcome: rule.as_json() for outcome, rule in self.rules.items()}


def parse_retry(value: object) -> RetryPolicy:
    """A policy from JSON; ValueError (with the key in front) when it is wrong."""
    if value is None:
        return RetryPolicy()
    if not isinstance(value, dict):
        raise ValueError('must be {"busy": {"max_attempts": 3, "backoff": "10m"}, ...}')
    rules: dict[str, RetryRule] = {}
    for outcome, rule in value.items():
        key = str(outcome)
        if key not in RETRYABLE:
            never = " (never retried)" if key in ("unknown", "rejected", "completed") else ""
            raise ValueError(f"{key[:20]}: not a retryable outcome{never} ({', '.join(RETRYABLE)})")
        if not isinstance(rule, dict):
            raise ValueError(f"{key}: must be {{max_attempts, backoff}}")
        unknown = [k for k in rule if k not in ("max_attempts", "backoff", "multiplier")]
        if unknown:
            raise ValueError(f"{key}.{str(unknown[0])[:20]}: unknown key")
        attempts = rule.get("max_attempts")
        if (
            isinstance(attempts, bool)
            or not isinstance(attempts, int)
            or not 1 <= attempts <= MAX_ATTEMPTS
        ):
            raise ValueError(f"{key}.max_attempts: a whole number from 1 to {MAX_ATTEMPTS}")
        try:
            backoff = float(parse_duration(rule.get("backoff", 600)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}.backoff: {exc}") from None
        if backoff < 0:
            raise ValueError(f"{key}.backoff: must not be negative")
        multiplier = rule.get("multiplier", 2.0)
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, int | float)
            or not 1 <= multiplier <= 10
        ):
            raise ValueError(f"{key}.multiplier: a number from 1 to 10")
        rules[key] = RetryRule(attempts, backoff, float(multiplier))
    return RetryPolicy(rules)
