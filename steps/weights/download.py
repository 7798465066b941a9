"""Parallel ranged downloads: many chunks in flight, each streamed socket -> digest -> disk.

Workers share one queue of chunks across all files, so a model of many shards and a model of
one huge file both keep every connection busy. A chunk that fails is retried a few times with
backoff; if it keeps failing the whole fetch stops, keeping every finished chunk for the next
run to resume from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from steps.errors import TransferError
from steps.weights.checksum import chunk_hasher
from steps.weights.partial import PartialFile
from steps.weights.plan import Chunk
from steps.weights.sources import RangeReader, Source

#: Bytes moved per read-hash-write step. Small enough that a block is still in the CPU's cache
#: when it is hashed and written after being received (4 MiB blocks cost a third more kernel
#: time in the copy to the page cache), large enough that syscalls and Python stay cheap.
BLOCK = 1024 * 1024

#: Pauses before the retries of a failed chunk: rides out a server restart or a proxy hiccup.
RETRY_BACKOFF_S = (0.5, 2.0)


class Downloader:
    """Fetches the pending chunks of a set of partial files with a pool of worker threads."""

    def __init__(
        self,
        source: Source,
        concurrency: int,
        on_bytes: Callable[[int], None] = lambda n: None,
        on_file_done: Callable[[PartialFile, str], None] = lambda p, c: None,
    ) -> None:
        self._source = source
        self._concurrency = concurrency
        self._on_bytes = on_bytes
        self._on_file_done = on_file_done
        self._stop = threading.Event()
        self._local = threading.local()
        self._readers: list[RangeReader] = []
        self._readers_lock = threading.Lock()

    def run(self, partials: list[PartialFile]) -> None:
        """Download every pending chunk; finish each file as its last chunk lands.

        Raises:
            TransferError | IntegrityError | SourceError: the first failure, after retries.
        """
        work = [(p, c) for p in partials for c in p.pending]
        for partial in partials:
            if not partial.pending:  # everything was on disk already: check and rename
                self._on_file_done(partial, partial.finish())
        if not work:
            return
        workers = min(self._concurrency, len(work))
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
                futures = [pool.submit(self._fetch_chunk, p, c) for p, c in work]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in done if f.exception()), None)
                if failed is not None:
                    self._stop.set()
                    for future in futures:
                        future.cancel()
                    raise failed.exception()  # type: ignore[misc]
        finally:
            for reader in self._readers:
                reader.close()

    def _reader(self) -> RangeReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._source.reader()
            self._local.buffer = memoryview(bytearray(BLOCK))
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def _fetch_chunk(self, partial: PartialFile, chunk: Chunk) -> None:
        if self._stop.is_set():
            return
        for attempt in range(len(RETRY_BACKOFF_S) + 1):
            try:
                digest = self._stream(partial, chunk)
                break
            except TransferError:
                if attempt == len(RETRY_BACKOFF_S) or self._stop.is_set():
                    raise
                time.sleep(RETRY_BACKOFF_S[attempt])
        if partial.record(chunk, digest):
            self._on_file_done(partial, partial.finish())

    def _stream(self, partial: PartialFile, chunk: Chunk) -> bytes | None:
        """Move one chunk in one request; chunk digests are computed while blocks are in memory."""
        reader = self._reader()
        hasher = chunk_hasher(partial.plan.algorithm) if partial.plan.per_chunk else None
        moved = 0

        def sink(offset: int, block: memoryview) -> None:
            nonlocal moved
            if self._stop.is_set():
                raise TransferError("stopped: another chunk failed")
            if hasher is not None:
                hasher.update(block)
            partial.write(offset, block)
            moved += len(block)
            self._on_bytes(len(block))

        try:
            reader.read_range(
                partial.plan.file, chunk.offset, chunk.length, self._local.buffer, sink
            )
        except TransferError:
            self._on_bytes(-moved)  # the chunk restarts from its beginning
            raise
        return hasher.digest() if hasher is not None else None
