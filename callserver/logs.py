"""Structured logging: one JSON object per line (or readable text for a terminal).

Call-scoped fields (``call_id``, ``graph``, ...) are passed as ``extra=`` and become top-level
keys. Values under keys that name secrets are masked, so a careless ``extra`` cannot leak an
API key or signature into the logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_DROPPED = frozenset({"color_message"})
"""uvicorn's second copy of some messages, with ANSI colour codes for its own console
formatter: a log line carries one plain message."""
_SKIPPED = _STANDARD | _DROPPED
_SECRET_WORDS = ("secret", "signature", "authorization", "api_key", "token", "password")


CALL_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "callserver_call", default=None
)
"""Set by the call task; every log line from it (and the SDK tasks it starts) carries it."""

_PHONE_RE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def bind_call(**fields: Any) -> dict[str, Any]:
    """Start (or extend) the call context of the current task; returns the live dict."""
    current = CALL_CONTEXT.get()
    if current is None:
        current = {}
        CALL_CONTEXT.set(current)
    current.update(fields)
    return current


class CallContextFilter(logging.Filter):
    """Adds ``call_id``/``graph`` of the running call to records that lack them, and masks
    phone numbers in messages when redaction is on."""

    def __init__(self, redact_numbers: bool = False) -> None:
        super().__init__()
        self.redact_numbers = redact_numbers

    def filter(self, record: logging.LogRecord) -> bool:
        context = CALL_CONTEXT.get()
        if context:
            for key, value in context.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if self.redact_numbers:
            message = record.getMessage()
            masked = _PHONE_RE.sub(_mask, message)
            if masked != message:
                record.msg, record.args = masked, None
            for key in ("caller", "dialed", "from", "to"):
                if isinstance(getattr(record, key, None), str):
                    setattr(record, key, _mask_number(getattr(record, key)))
        return True


def _mask(match: re.Match[str]) -> str:
    return _mask_number(match.group(0))


def _mask_number(number: str) -> str:
    digits = [c for c in number if c.isdigit()]
    return "***" + "".join(digits[-4:]) if len(digits) >= 4 else "***"


def _clean(key: str, value: Any) -> Any:
    if any(word in key.lower() for word in _SECRET_WORDS):
        return "[redacted]"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _SKIPPED and not key.startswith("_"):
                out[key] = _clean(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={_clean(k, v)}"
            for k, v in record.__dict__.items()
            if k not in _SKIPPED and not k.startswith("_")
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", fmt: str = "json", *, redact_numbers: bool = False) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(CallContextFilter(redact_numbers))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "websockets", "openai.agents", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
