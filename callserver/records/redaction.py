"""Secret and personal-data redaction: call recordings (cassettes) and post-call transcripts.

A cassette is meant to be copied around (into a test suite, a bug report), so nothing that
grants access may reach it: API keys, ``Authorization`` headers, HTTP tool header values and
signing secrets. Operators may also name extra fields (such as caller numbers) to hide.

Four mechanisms, applied to every value:

* by key: a dict key (or a ``{"name": ..., "value": ...}`` pair, the shape of SIP and HTTP
  header lists) whose name is sensitive has its value replaced by :data:`REDACTED`;
* by known value: exact secret strings (the API key, HTTP tool secrets) are replaced wherever
  they appear inside any string, e.g. an echoed header inside a tool's output;
* by pattern: anything shaped like an OpenAI key, a ``whsec_`` secret or a bearer token;
* by text rule (optional): personal data in free text such as card numbers, phone numbers
  or e-mail addresses (``callserver.records.pii``), for transcripts that leave the process.

A value hidden by an *extra* field is also learned for the rest of the call, so a caller
number removed from the webhook is also removed from the instructions that quote it.
Replay treats :data:`REDACTED` inside an expected string as one token of any text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = [
    "DEFAULT_SENSITIVE_KEYS",
    "REDACTED",
    "Redactor",
    "config_secrets",
    "settings_secrets",
]

REDACTED = "[redacted]"

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api_key",
        "api-key",
        "apikey",
        "openai_api_key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "webhook-signature",
        "x-twilio-signature",
        "client_secret",
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
    }
)
"""Keys whose values are never recorded (compared case-insensitively)."""

_SECRET_PATTERNS = re.compile(
    r"(?:sk-[A-Za-z0-9_\-]{16,}"  # OpenAI API keys (sk-..., sk-proj-...)
    r"|whsec_[A-Za-z0-9+/=_\-]{8,}"  # Standard Webhooks signing secrets
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,})"  # bearer tokens in free text
)


def _hide_token(match: re.Match[str]) -> str:
    """``Bearer abc...`` keeps its scheme word: :data:`REDACTED` stands for one token."""
    text = match.group(0)
    if text[:6].lower() == "bearer":
        return text[: len(text) - len(text[6:].lstrip())] + REDACTED
    return REDACTED


_URI_USER = re.compile(r"^(?P<pre>.*?(?:sips?|tel):)(?P<user>[^@;>]+)(?P<post>.*)$", re.I)
_MIN_SECRET_LEN = 4  # shorter "secrets" would shred ordinary text


class TextRule(Protocol):
    """Rewrites free text, e.g. ``4111 1111 1111 1111`` -> ``[card]``."""

    def apply(self, text: str) -> str: ...


class Redactor:
    """Redacts one call's recorded values; cheap to create, one per call.

    ``secrets`` are exact strings to hide anywhere; ``extra_fields`` are additional key or
    header names (e.g. ``from``, ``to``, ``caller``) whose values are hidden and learned;
    ``rules`` rewrite every string after the secrets are gone (personal data).
    """

    def __init__(
        self,
        *,
        secrets: Iterable[str] = (),
        extra_fields: Iterable[str] = (),
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
        rules: Iterable[TextRule] = (),
    ) -> None:
        self._rules = tuple(rules)
        self._keys = frozenset(k.lower() for k in sensitive_keys)
        self._extra = frozenset(f.lower() for f in extra_fields)
        self._values: set[str] = {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}
        self._values_re: re.Pattern[str] | None = None
        self._compile()

    def _compile(self) -> None:
        if not self._values:
            self._values_re = None
            return
        # Longest first, so a secret containing another is hidden whole.
        ordered = sorted(self._values, key=len, reverse=True)
        self._values_re = re.compile("|".join(re.escape(v) for v in ordered))

    def learn(self, value: str) -> None:
        """Hide ``value`` (and the user part of a SIP/tel URI) from now on."""
        new = {value}
        match = _URI_USER.match(value)
        if match:
            new.add(match.group("user"))
        new = {v for v in new if len(v) >= _MIN_SECRET_LEN and v != REDACTED}
        if not new <= self._values:
            self._values |= new
            self._compile()

    def redact(self, value: Any) -> Any:
        """A redacted copy of a JSON-like value (dicts, lists, strings, scalars)."""
        if self._extra:
            self._learn_from(value)
        return self._walk(value)

    def _learn_from(self, value: Any) -> None:
        """First pass: learn extra-field values, so they are hidden even where they were
        quoted earlier in the same structure than the field itself."""
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and name.lower() in self._extra:
                if isinstance(value.get("value"), str):
                    self.learn(value["value"])
            for key, item in value.items():
                if isinstance(key, str) and key.lower() in self._extra and isinstance(item, str):
                    self.learn(item)
                else:
                    self._learn_from(item)
        elif isinstance(value, list):
            for item in value:
                self._learn_from(item)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return self._walk_dict(value)
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value

    def _walk_dict(self, value: dict[Any, Any]) -> dict[Any, Any]:
        name = value.get("name")
        hide_pair = isinstance(name, str) and self._hidden(name)
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and self._hidden(key):
                out[key] = REDACTED if item not in (None, "") else item
            elif hide_pair and key == "value":
                out[key] = REDACTED
            else:
                out[key] = self._walk(item)
        return out

    def _hidden(self, key: str) -> bool:
        lowered = key.lower()
        return lowered in self._keys or lowered in self._extra

    def scrub(self, text: str) -> str:
        """``text`` with known secret values and secret-shaped tokens replaced."""
        if self._values_re is not None:
            text = self._values_re.sub(REDACTED, text)
        if "sk-" in text or "whsec_" in text or "earer" in text:
            text = _SECRET_PATTERNS.sub(_hide_token, text)
        for rule in self._rules:
            text = rule.apply(text)
        return text


def settings_secrets(settings: Any) -> list[str]:
    """Every secret value held by the service settings (API key, webhook secrets...)."""
    found: list[str] = []
    for name in ("openai_api_key", "webhook_secret", "twilio_auth_token", "postcall_secret"):
        value = getattr(settings, name, None)
        if value is None:
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        if raw:
            found.append(raw)
    for secret in (getattr(settings, "twilio_shared_keys", None) or {}).values():
        found.append(secret.get_secret_value())
    return found


def config_secrets(config: Any) -> list[str]:
    """Header values and signing secrets of every HTTP tool in a loaded config.

    HTTP tools keep them as ``SecretStr`` on the runtime object whose ``invoke`` is the
    tool's ``on_invoke_tool``; anything else is a Python tool and holds no config secrets.
    """
    from callserver.graph.http_tool import HttpToolRuntime

    found: set[str] = set()
    for graph in getattr(config, "graphs", {}).values():
        for plan in graph.agents.values():
            for tool in plan.tools:
                runtime = getattr(tool.on_invoke_tool, "__self__", None)
                if not isinstance(runtime, HttpToolRuntime):
                    continue
                for header_value in runtime.headers.values():
                    found.add(header_value.get_secret_value())
                    # "Bearer abc" -> also hide "abc" on its own.
                    found.update(header_value.get_secret_value().split()[1:])
                if runtime.signing_secret is not None:
                    found.add(runtime.signing_secret.get_secret_value())
    return sorted(v for v in found if v)
