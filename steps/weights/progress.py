"""Progress of a transfer: a rich bar on a terminal, a log line every few seconds in a pod's log."""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger(__name__)


class TransferProgress:
    """Counts bytes from many threads and shows them; `advance` is negative for a retried chunk."""

    LOG_EVERY_S = 5.0

    def __init__(self, description: str, total: int, completed: int = 0, enabled: bool = True):
        self.description = description
        self.total = total
        self.completed = completed
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._start_bytes = completed
        self._last_log = self._started
        console = Console(file=sys.stderr)
        self._bar: Progress | None = None
        self._enabled = enabled
        if enabled and console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task(description, total=total, completed=completed)

    def __enter__(self) -> TransferProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._enabled and kind is None:
            self._log()

    def advance(self, nbytes: int) -> None:
        """Count bytes moved (thread-safe)."""
        with self._lock:
            self.completed += nbytes
            now = time.monotonic()
            due = now - self._last_log >= self.LOG_EVERY_S
            if due:
                self._last_log = now
        if self._bar is not None:
            self._bar.advance(self._task, nbytes)
        elif due and self._enabled:
            self._log()

    def rate(self) -> float:
        """Bytes per second moved by this run (resumed bytes excluded)."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return (self.completed - self._start_bytes) / elapsed

    def _log(self) -> None:
        pct = 100.0 * self.completed / self.total if self.total else 100.0
        log.info(
            "%s: %.1f of %.1f MB (%.0f%%), %.1f MB/s",
            self.description,
            self.completed / 1e6,
            self.total / 1e6,
            pct,
            self.rate() / 1e6,
        )
