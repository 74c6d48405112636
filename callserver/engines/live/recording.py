"""Download a stored GPT-Live call's recording (``store: true``) after it ended.

``GET /v1/live/sessions/{id}/content`` answers a stereo WAV (left: caller, right: agent)
once the session has finalised, which can take a while after ``session.closed``; until then
it fails, so the download is retried with backoff (tenacity) within a deadline. The whole
download runs in a worker thread (blocking file writes never touch the event loop), streams
to ``<dir>/<UTC date>/<session_id>.wav.part`` (mode 0600) and renames when complete.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

REQUEST_TIMEOUT_S = 10.0
DEADLINE_S = 120.0
MAX_BYTES = 1 << 30
"""A 2-hour stereo 24 kHz PCM16 call is ~690 MB; anything bigger is not a recording."""


class _NotReady(Exception):
    """The session is still finalising (or the service hiccuped): try again."""


@dataclass(frozen=True, slots=True)
class RecordingJob:
    """Everything one download needs, so it can run in a thread without shared state."""

    base_url: str
    api_key: str
    session_id: str
    directory: Path
    deadline_s: float = DEADLINE_S
    initial_wait_s: float = 0.25


def download(job: RecordingJob, stop: threading.Event) -> dict[str, Any]:
    """Blocking: fetch the recording; returns ``{"file", "bytes"}`` or ``{"error"}``."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    target = job.directory / day / f"{job.session_id}.wav"
    url = f"{job.base_url.rstrip('/')}/live/sessions/{quote(job.session_id, safe='')}/content"
    headers = {"Authorization": f"Bearer {job.api_key}", "Accept": "application/binary"}
    retrying = Retrying(
        retry=retry_if_exception_type((_NotReady, httpx.TransportError)),
        stop=stop_after_delay(job.deadline_s),
        wait=wait_exponential(multiplier=job.initial_wait_s, max=10.0),
        reraise=True,
    )
    try:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            for attempt in retrying:
                with attempt:
                    if stop.is_set():
                        return {"error": "shutting down"}
                    size = _fetch(client, url, headers, target)
        return {"file": str(target), "bytes": size}
    except _NotReady as exc:
        return {"error": f"not available: {exc}"}
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _fetch(client: httpx.Client, url: str, headers: dict[str, str], target: Path) -> int:
    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status in (404, 409, 425, 429) or status >= 500:
            raise _NotReady(f"HTTP {status}")
        if status >= 300:
            raise ValueError(f"HTTP {status}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        size = 0
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ValueError("recording larger than 1 GiB")
                out.write(chunk)
        os.replace(partial, target)
        return size
