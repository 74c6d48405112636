"""The one background thread that writes every cassette file of the process.

Recording must never slow down or break a call, so the event loop only appends ready-made
JSON lines to a queue; a daemon thread opens files, writes, and flushes after each batch
(a batch is whatever queued up while it was writing, so a crash loses at most the last few
milliseconds and leaves a readable prefix). Disk errors are logged once per file, counted in
:class:`WriterStats`, and the file's remaining lines are dropped: the call goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

MAX_QUEUED_LINES = 200_000
"""Beyond this backlog (a stuck disk), new lines are dropped and counted instead of queued."""


@dataclasses.dataclass(slots=True)
class WriterStats:
    """Counters for metrics and tests; written by the writer thread only."""

    files_opened: int = 0
    lines_written: int = 0
    write_errors: int = 0
    """Failed opens, writes, flushes or closes (each logged)."""
    lines_dropped: int = 0
    """Lines not written: their file had failed, or the queue was full."""


@dataclasses.dataclass(slots=True)
class _Open:
    key: int
    path: Path
    first_line: str


@dataclasses.dataclass(slots=True)
class _Line:
    key: int
    text: str


@dataclasses.dataclass(slots=True)
class _Close:
    key: int
    last_line: str
    done: Callable[[], None]


_Stop = object()
_Message = _Open | _Line | _Close | object


class CassetteWriter:
    """Owns the writer thread and the open files; shared by every recorder of a process."""

    def __init__(self, *, on_error: Callable[[], None] | None = None) -> None:
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._files: dict[int, IO[str] | None] = {}
        self._paths: dict[int, Path] = {}
        self._next_key = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._on_error = on_error

    # -- called from the event loop (never blocks) -------------------------------------------

    def open(self, path: Path, first_line: str) -> int:
        """Queue the creation of ``path`` with its header line; returns the file's key."""
        with self._lock:
            self._next_key += 1
            key = self._next_key
            self._ensure_thread()
        self._queue.put(_Open(key, path, first_line))
        return key

    def write(self, key: int, text: str) -> None:
        """Queue one line (without its newline)."""
        if self._queue.qsize() > MAX_QUEUED_LINES:
            self.stats.lines_dropped += 1
            return
        self._queue.put(_Line(key, text))

    async def close(self, key: int, last_line: str, timeout: float = 5.0) -> bool:
        """Queue the footer and the close; wait (without blocking the loop) until done."""
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        self._queue.put(_Close(key, last_line, lambda: loop.call_soon_threadsafe(finished.set)))
        try:
            await asyncio.wait_for(finished.wait(), timeout)
        except TimeoutError:
            log.warning("cassette close timed out (disk slow?)")
            return False
        except RuntimeError:  # loop closing under us
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, close every file, end the thread (blocking; at shutdown)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_Stop)
            thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="cassette-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            touched: set[int] = set()
            stop = False
            for message in batch:
                if message is _Stop:
                    stop = True
                    continue
                self._handle(message, touched)
            for key in touched:
                self._flush(key)
            if stop:
                for key in list(self._files):
                    self._close_file(key)
                return

    def _handle(self, message: Any, touched: set[int]) -> None:
        if isinstance(message, _Open):
            self._paths[message.key] = message.path
            try:
                message.path.parent.mkdir(parents=True, exist_ok=True)
                # Owner-only: a cassette holds what callers said.
                fd = os.open(message.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                handle = os.fdopen(fd, "w", encoding="utf-8")
            except OSError as exc:
                self._error(message.key, "open", exc)
                self._files[message.key] = None
                return
            self.stats.files_opened += 1
            self._files[message.key] = handle
            self._put(message.key, message.first_line, touched)
        elif isinstance(message, _Line):
            self._put(message.key, message.text, touched)
        elif isinstance(message, _Close):
            self._put(message.key, message.last_line, touched)
            self._flush(message.key)
            touched.discard(message.key)
            self._close_file(message.key)
            message.done()

    def _put(self, key: int, text: str, touched: set[int]) -> None:
        handle = self._files.get(key)
        if handle is None:
            self.stats.lines_dropped += 1
            return
        try:
            handle.write(text + "\n")
        except (OSError, ValueError) as exc:
            self._fail(key, handle, "write", exc)
            self.stats.lines_dropped += 1
            return
        self.stats.lines_written += 1
        touched.add(key)

    def _flush(self, key: int) -> None:
        handle = self._files.get(key)
        if handle is None:
            return
        try:
            handle.flush()
        except (OSError, ValueError) as exc:
            self._fail(key, handle, "flush", exc)

    def _close_file(self, key: int) -> None:
        handle = self._files.pop(key, None)
        self._paths.pop(key, None)
        if handle is None:
            return
        try:
            handle.close()
        except (OSError, ValueError) as exc:
            self._error(key, "close", exc)

    def _fail(self, key: int, handle: IO[str], what: str, exc: Exception) -> None:
        """A file that failed once is abandoned: a half-written line must not be followed by
        more lines that would look like a healthy cassette."""
        self._error(key, what, exc)
        self._files[key] = None
        try:
            handle.close()
        except (OSError, ValueError):
            pass

    def _error(self, key: int, what: str, exc: Exception) -> None:
        self.stats.write_errors += 1
        log.error(
            "cassette %s failed: %s (recording of this call stopped; the call goes on)",
            what,
            exc,
            extra={"path": str(self._paths.get(key, "?"))},
        )
        if self._on_error is not None:
            try:
                self._on_error()
            except Exception:
                log.exception("cassette error callback failed")
