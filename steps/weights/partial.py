"""A file being downloaded: its bytes in a `.partial` file, its finished chunks in a journal.

The journal is append-only: one line per chunk, written after the chunk's bytes, so after a
crash or a dropped connection every line names bytes that are on disk and the next run
fetches only the rest; it also keeps each chunk's digest when the checksum is per chunk. For
ordered hashes (whole-file MD5, SHA-256) a hasher follows the contiguous prefix of finished
chunks, reading them back from the page cache, so checking ends just after the last chunk.
The file gets its final name only after its size and checksum check out, by an atomic
rename: a file under its final name is always a complete, checked file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from steps.errors import IntegrityError
from steps.weights.checksum import MiB, combine_chunks, ordered_hasher
from steps.weights.plan import Chunk, FilePlan

_HEADER = "llmflow-journal v2"

#: Read-back buffers of the prefix hashers, one per thread, reused: a fresh buffer per chunk
#: would cost a page fault per 4 KiB.
_READ_BACK = threading.local()
_READ_BACK_BYTES = MiB


def _read_back_buffer() -> memoryview:
    buffer = getattr(_READ_BACK, "buffer", None)
    if buffer is None:
        buffer = _READ_BACK.buffer = memoryview(bytearray(_READ_BACK_BYTES))
    return buffer


class PartialFile:
    """One file of a cache entry while it is being fetched."""

    def __init__(self, plan: FilePlan, final: Path, staging: Path) -> None:
        self.plan = plan
        self.final = final
        self.data = staging / (plan.file.path + ".partial")
        self.journal = staging / (plan.file.path + ".journal")
        self.done: dict[int, bytes] = {}
        self._lock = threading.Condition()
        self._fd = -1
        self._journal_fd = -1
        self._whole = None if plan.per_chunk else ordered_hasher(plan.algorithm, plan.file.size)
        self._hashed = 0  # chunks of the contiguous prefix fed to `_whole`
        self._hashing = False

    @property
    def pending(self) -> list[Chunk]:
        """Chunks not yet on disk."""
        return [c for c in self.plan.chunks if c.index not in self.done]

    @property
    def resumed_bytes(self) -> int:
        """Bytes already on disk from an earlier, interrupted run."""
        return sum(c.length for c in self.plan.chunks if c.index in self.done)

    def open(self) -> None:
        """Open (or create) the data file and journal, keeping what an earlier run finished."""
        self.data.parent.mkdir(parents=True, exist_ok=True)
        header = f"{_HEADER} size={self.plan.file.size} etag={self.plan.file.etag} "
        header += f"sum={self.plan.algorithm} part={self.plan.part_size}\n"
        self.done = self._read_journal(header) if self.data.exists() else {}
        if not self.done:
            self.journal.unlink(missing_ok=True)
        self._fd = os.open(self.data, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size != self.plan.file.size:
            os.ftruncate(self._fd, self.plan.file.size)
        self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not self.done:
            os.write(self._journal_fd, header.encode())

    def _read_journal(self, header: str) -> dict[int, bytes]:
        try:
            lines = self.journal.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return {}
        if not lines or lines[0] != header:
            return {}  # another version of the file, or another chunking: start over
        done: dict[int, bytes] = {}
        by_index = {c.index: c for c in self.plan.chunks}
        for line in lines[1:]:
            fields = line.split()
            if not line.endswith("\n") or len(fields) != 3:
                break  # torn last line of a killed run
            index, length = int(fields[0]), int(fields[1])
            digest = b"" if fields[2] == "-" else bytes.fromhex(fields[2])
            if index in by_index and by_index[index].length == length:
                done[index] = digest
        return done

    def write(self, offset: int, data: memoryview) -> None:
        """Write bytes at an offset; safe from several threads (positional writes)."""
        while data:
            n = os.pwrite(self._fd, data, offset)
            data, offset = data[n:], offset + n

    def record(self, chunk: Chunk, digest: bytes | None) -> bool:
        """Journal a finished chunk (with its digest when the checksum is per chunk).

        Returns:
            True when it was the file's last chunk.
        """
        text = digest.hex() if digest is not None else "-"
        os.write(self._journal_fd, f"{chunk.index} {chunk.length} {text}\n".encode())
        with self._lock:
            self.done[chunk.index] = digest or b""
            last = len(self.done) == len(self.plan.chunks)
        if self._whole is not None:
            self._follow()
        return last

    def _follow(self) -> None:
        """Feed the ordered hash with the finished prefix; one thread hashes at a time."""
        with self._lock:
            if self._hashing:
                return
            self._hashing = True
        while True:
            with self._lock:
                if self._hashed >= len(self.plan.chunks) or self._hashed not in self.done:
                    self._hashing = False
                    self._lock.notify_all()
                    return
                chunk = self.plan.chunks[self._hashed]
            self._hash_range(chunk.offset, chunk.length)
            with self._lock:
                self._hashed += 1

    def _hash_range(self, offset: int, length: int) -> None:
        assert self._whole is not None
        buffer = _read_back_buffer()
        end = offset + length
        while offset < end:
            n = os.preadv(self._fd, [buffer[: min(len(buffer), end - offset)]], offset)
            if n == 0:
                raise IntegrityError(f"{self.data}: shorter than expected while checking it")
            self._whole.update(buffer[:n])
            offset += n

    def _hash_all(self) -> None:
        """Finish the ordered hash, also when another thread is still hashing."""
        while True:
            self._follow()  # chunks finished by an earlier run are hashed here too
            with self._lock:
                if self._hashed == len(self.plan.chunks):
                    return
                self._lock.wait_for(lambda: not self._hashing)

    def finish(self) -> str:
        """Check size and checksum, then move the file to its final name.

        Returns:
            The file's checksum in the plan's algorithm.

        Raises:
            IntegrityError: the bytes do not match the source; the partial state is removed so
                the next run fetches the file afresh.
        """
        plan = self.plan
        if self._whole is None:
            digests = [self.done[c.index] for c in plan.chunks]
            checksum = combine_chunks(plan.algorithm, digests, [c.length for c in plan.chunks])
        else:
            self._hash_all()
            checksum = self._whole.hexdigest()
        size = os.fstat(self._fd).st_size
        os.fsync(self._fd)
        self.close()
        expected = plan.file
        if size != expected.size or (plan.checked and checksum != plan.expected):
            self.discard()
            got = f"{size} bytes, {plan.algorithm} {checksum}"
            declared = f"{plan.algorithm} {plan.expected}" if plan.checked else "no checksum"
            raise IntegrityError(
                f"{expected.path}: downloaded {got} but the source lists {expected.size} bytes, "
                f"{declared}; the file was discarded, run again to re-fetch it"
            )
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o644)
        os.replace(self.data, self.final)
        self.journal.unlink(missing_ok=True)
        return checksum

    def close(self) -> None:
        """Close file descriptors, keeping data and journal for a later resume."""
        for fd in (self._fd, self._journal_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._journal_fd = -1

    def discard(self) -> None:
        """Remove all partial state of this file."""
        self.close()
        self.data.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)
