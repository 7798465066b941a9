"""Records in a folder (`file:///path`): create-only by hard link, swaps under a lock file.

A record is written to a temporary file first and then hard-linked to its name: `link(2)`
fails when the name exists, so a record is never replaced, and it appears whole. An alias is
swapped while holding an exclusive `flock(2)` on `.lock` beside it: the current content's
SHA-256 is compared with the one read before, and the new content is renamed over it. Every
writer takes the same lock, so the compare and the rename are one step for all processes on
the machine (and on NFS, where Linux maps `flock` to POSIX byte-range locks).
"""

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from steps.releases._backend import Blob, Changed, Exists


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileBackend:
    """Small objects as files below a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"file://{root}"

    def read(self, key: str) -> Blob | None:
        """The file's bytes and their SHA-256, or None."""
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        return Blob(data, _etag(data))

    def create(self, key: str, data: bytes) -> None:
        """Link a finished temporary file to `key`; `Exists` when the name is taken."""
        target = self.root / key
        tmp = self._write_temporary(target, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise Exists(key) from None
        finally:
            tmp.unlink()

    def swap(self, key: str, data: bytes, etag: str | None) -> str:
        """Under the folder's lock: compare the current content's hash, then rename over it."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self.read(key)
            if (current.etag if current else None) != etag:
                raise Changed(key)
            tmp = self._write_temporary(target, data)
            os.replace(tmp, target)
        finally:
            os.close(fd)  # releases the lock
        return _etag(data)

    def names(self, folder: str) -> list[str]:
        """Files directly in the folder, hidden ones (the lock, temporaries) left out."""
        try:
            entries = list(os.scandir(self.root / folder))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if e.is_file() and not e.name.startswith(".")]

    def check_conditions(self) -> None:
        """Nothing to check: the lock and the link make every write here conditional."""

    @staticmethod
    def _write_temporary(target: Path, data: bytes) -> Path:
        """`data` in a hidden file beside `target`, flushed to disk, world-readable."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        return Path(name)
