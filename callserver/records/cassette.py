"""Call recording: one JSON Lines cassette per call, written off the event loop.

Layout of a cassette (``<dir>/<date>/<call_id>.cassette.jsonl``)::

    {"kind": "header", "format": "callserver-cassette", "version": 1, "callserver_version": ...,
     "graph": ..., "config_hash": ..., "call_id": ..., "started_at": "<ISO-8601 UTC>"}
    {"kind": "webhook", "t": 0.0004, "headers": {...}, "body": {...}}
    {"kind": "ws_out", "t": 0.21, "event": {...}}
    ...
    {"kind": "closed", "t": 12.3, "complete": true, "lines": 57, "dropped": 0}

``t`` is monotonic seconds since the webhook arrived. A file without the ``closed`` line was
cut short by a crash; ``complete: false`` means the process went down abnormally. The call
path feeds a :class:`CassetteRecorder` through the ``CallRecorder`` protocol; the factory
made by :func:`make_recorder_factory` decides per call whether to record at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callserver.records.cassette_writer import CassetteWriter, WriterStats
from callserver.records.redaction import Redactor, config_secrets, settings_secrets

__all__ = [
    "FORMAT",
    "VERSION",
    "CassetteRecorder",
    "CassetteRecorderFactory",
    "make_recorder_factory",
    "sampled",
]

log = logging.getLogger(__name__)

FORMAT = "callserver-cassette"
VERSION = 1
SUFFIX = ".cassette.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_NEVER_RECORDED_HEADERS = frozenset({"webhook-signature"})


def _callserver_version() -> str:
    from callserver import __version__

    return __version__


def _dumps(value: Any) -> str:
    """Compact JSON; anything not JSON-native (a stray object) is written as its str()."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class CassetteRecorder:
    """Records one call; implements ``CallRecorder`` (never blocks, never raises)."""

    def __init__(
        self,
        *,
        writer: CassetteWriter,
        path: Path,
        call_id: str,
        graph: str,
        config_hash: str,
        t0: float,
        redactor: Redactor,
    ) -> None:
        self.path = path
        self._writer = writer
        self._t0 = t0
        self._redactor = redactor
        self._lines = 1
        self._closed = False
        header = {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "callserver_version": _callserver_version(),
            "graph": graph,
            "config_hash": config_hash,
            "call_id": call_id,
            "started_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        self._key = writer.open(path, _dumps(header))

    def record(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one event line. Called on the event loop for every frame: keep it cheap."""
        if self._closed:
            return
        try:
            if kind == "webhook":
                data = _without_signature(data)
            line = {"kind": kind, "t": round(time.monotonic() - self._t0, 6)}
            line.update(self._redactor.redact(data))
            line["kind"] = kind
            self._writer.write(self._key, _dumps(line))
            self._lines += 1
        except Exception:  # a recorder must never break the call it records
            log.exception("cassette: could not record a %s event", kind)

    async def close(self, *, complete: bool) -> None:
        """Write the ``closed`` footer and wait until the file is flushed and closed."""
        if self._closed:
            return
        self._closed = True
        footer = {
            "kind": "closed",
            "t": round(time.monotonic() - self._t0, 6),
            "complete": complete,
            "lines": self._lines + 1,
        }
        try:
            await self._writer.close(self._key, _dumps(footer))
        except Exception:
            log.exception("cassette: close failed")


def _without_signature(data: dict[str, Any]) -> dict[str, Any]:
    headers = data.get("headers")
    if not isinstance(headers, dict):
        return data
    kept = {k: v for k, v in headers.items() if str(k).lower() not in _NEVER_RECORDED_HEADERS}
    return {**data, "headers": kept}


def sampled(call_id: str, rate: float) -> bool:
    """Whether ``call_id`` is in the sample: a hash, not a dice roll, so a redelivered
    webhook or another instance makes the same decision for the same call."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(call_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class CassetteRecorderFactory:
    """``RecorderFactory``: a recorder per sampled call, all sharing one writer thread."""

    def __init__(
        self,
        *,
        directory: Path,
        mode: str = "on",
        sample_rate: float = 1.0,
        secrets: list[str] | None = None,
        redact_fields: tuple[str, ...] = (),
        config: Any = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.mode = mode
        self.sample_rate = sample_rate
        self.writer = CassetteWriter(on_error=on_error)
        self._secrets = list(secrets or [])
        self._redact_fields = tuple(redact_fields)
        self._config = config
        self._config_secrets: tuple[str | None, list[str]] = (None, [])

    @property
    def stats(self) -> WriterStats:
        """Files, lines, write errors and dropped lines so far (for metrics and tests)."""
        return self.writer.stats

    def __call__(self, start: Any) -> CassetteRecorder | None:
        """A recorder for the call ``start`` describes, or None when it is not recorded."""
        if self.mode == "off":
            return None
        if self.mode == "sampled" and not sampled(start.call_id, self.sample_rate):
            return None
        try:
            redactor = Redactor(
                secrets=[*self._secrets, *self._current_config_secrets()],
                extra_fields=self._redact_fields,
            )
            return CassetteRecorder(
                writer=self.writer,
                path=self.path_for(start.call_id),
                call_id=start.call_id,
                graph=start.graph,
                config_hash=start.config_hash,
                t0=start.t0,
                redactor=redactor,
            )
        except Exception:
            log.exception("cassette: could not start recording", extra={"call_id": start.call_id})
            return None

    def path_for(self, call_id: str) -> Path:
        """``<dir>/<UTC date>/<call_id>.cassette.jsonl`` (the id made filename-safe)."""
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return self.directory / day / (_UNSAFE.sub("_", call_id)[:120] + SUFFIX)

    def _current_config_secrets(self) -> list[str]:
        """HTTP tool secrets of the config serving calls now (recomputed after a reload)."""
        if self._config is None:
            return []
        try:
            config = self._config.current
        except Exception:
            return []
        cached_hash, cached = self._config_secrets
        if cached_hash != config.config_hash:
            cached = config_secrets(config)
            self._config_secrets = (config.config_hash, cached)
        return cached

    def stop(self) -> None:
        """Flush and close everything (blocking): call once at shutdown, after the calls."""
        self.writer.stop()

    async def aclose(self) -> None:
        """:meth:`stop` without blocking the event loop (for the app's lifespan)."""
        await asyncio.to_thread(self.writer.stop)


def make_recorder_factory(
    settings: Any, config: Any = None, *, on_error: Callable[[], None] | None = None
) -> CassetteRecorderFactory | None:
    """The recorder factory the settings ask for, or None when recording is off.

    ``config`` (a ``ConfigHolder``, optional) lets the redactor know the HTTP tool secrets
    of the config that serves each call; ``on_error`` is called on every write error (a
    metrics counter). Settings read (all optional, default off):
    ``recording_mode`` (off|on|sampled), ``recording_sample_rate`` (0..1),
    ``recording_dir`` (default ./recordings), ``recording_redact_fields`` (extra names).
    """
    mode = str(getattr(settings, "recording_mode", "off") or "off").lower()
    if mode not in ("off", "on", "sampled"):
        raise ValueError(f"recording_mode must be off, on or sampled, not {mode!r}")
    if mode == "off":
        return None
    rate = float(getattr(settings, "recording_sample_rate", 1.0))
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"recording_sample_rate must be between 0 and 1, not {rate}")
    fields = getattr(settings, "recording_redact_fields", ()) or ()
    if isinstance(fields, str):
        fields = tuple(f.strip() for f in fields.split(",") if f.strip())
    return CassetteRecorderFactory(
        directory=Path(getattr(settings, "recording_dir", None) or "recordings"),
        mode=mode,
        sample_rate=rate,
        secrets=settings_secrets(settings),
        redact_fields=tuple(fields),
        config=config,
        on_error=on_error,
    )
