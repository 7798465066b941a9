"""Argo `synchronization.mutexes` on one machine: file locks shared by every local run.

A mutex named `gpu` in namespace `llmflow` is the lock file `<root>/locks/llmflow.gpu.lock`,
so two `llmflow run`s on the same machine (and the same --root) serialise exactly as two
Workflows holding that mutex do on a cluster. Waiting shows Argo's message on the node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from workflows.exceptions import RunError


@contextmanager
def hold_mutexes(
    root: Path,
    namespace: str,
    sync: dict[str, Any] | None,
    stopping: Callable[[], threading.Event],
    on_wait: Callable[[str], None],
) -> Iterator[None]:
    """Hold every mutex a `synchronization` block names, in order, until the block ends.

    Args:
        root: The llmflow folder; locks live in `root/locks`.
        namespace: Namespace of mutexes that name none.
        sync: The template's or workflow's `synchronization`, or None.
        stopping: Returns the run's stop event (it is replaced for the exit handler).
        on_wait: Told the waiting message, and "" once the lock is held.
    """
    locks = []
    try:
        for mutex in (sync or {}).get("mutexes") or []:
            space = mutex.get("namespace") or namespace
            (root / "locks").mkdir(parents=True, exist_ok=True)
            lock = FileLock(root / "locks" / f"{space}.{mutex['name']}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                on_wait(f"Waiting for {space}/Mutex/{mutex['name']} lock")
                while True:
                    if stopping().is_set():
                        raise RunError("stopped while waiting for a mutex") from None
                    try:
                        lock.acquire(timeout=0.2)
                        break
                    except Timeout:
                        continue
                on_wait("")
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
