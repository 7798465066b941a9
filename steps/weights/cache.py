"""The content-addressed weights cache: `<root>/<model>/<digest>/`, sealed by its manifest.

Layout of one entry:

    <root>/<model>/sha256-<hex>/            the model's files, ready to load
    <root>/<model>/sha256-<hex>/.llmflow/   manifest.json (written last), partial/ (in progress)
    <root>/<model>/.locks/sha256-<hex>.lock single-flight lock for fetches on this node

The digest hashes the source's listing (paths, sizes, ETags), so deciding whether the cache
holds a model costs one listing and no download. The manifest is written last and atomically
(write then rename): an entry without one is never served, whatever files it holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from steps.weights.checksum import ETAG_MD5, ETAG_PARTS, file_checksum
from steps.weights.sources import RemoteFile

log = logging.getLogger(__name__)

Verify = Literal["stat", "full"]
MANIFEST_FORMAT = 1


def listing_digest(files: list[RemoteFile]) -> str:
    """The content digest of a model: SHA-256 over its sorted (path, size, ETag) triples."""
    canonical = json.dumps(
        sorted((f.path, f.size, f.etag) for f in files), separators=(",", ":")
    ).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class CachedFile:
    """A file as the manifest records it.

    Attributes:
        path: Relative path inside the entry.
        size: Size in bytes.
        etag: The source's tag for this file when it was fetched.
        checksum: The file's checksum in `algorithm`, recomputable with `part_size`.
        part_size: The part size of a multipart ETag (`md5-parts`), else 0.
        mtime_ns: Modification time after the file was written, for cheap `stat` checks.
        algorithm: The checksum's algorithm (`steps.weights.checksum`); "" in entries written
            before algorithms were recorded, whose checksums are S3 ETags.
    """

    path: str
    size: int
    etag: str
    checksum: str
    part_size: int
    mtime_ns: int
    algorithm: str = ""

    @property
    def checksum_algorithm(self) -> str:
        """The algorithm `checksum` is in."""
        return self.algorithm or (ETAG_PARTS if self.part_size else ETAG_MD5)


@dataclass(frozen=True)
class Manifest:
    """What a complete cache entry holds.

    `revision` is the exact version of the source that was listed (a Hub commit sha), so a
    moving name such as `main` in the source URI still says what the entry holds.
    """

    source: str
    digest: str
    files: list[CachedFile]
    created_at: float
    format: int = MANIFEST_FORMAT
    revision: str = ""

    def to_json(self) -> str:
        """Serialise for the manifest file."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest file; raises ValueError on any other shape."""
        data = json.loads(text)
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"manifest format {data.get('format')!r}")
        files = [CachedFile(**f) for f in data.pop("files")]
        return cls(files=files, **data)


class CacheEntry:
    """One model version in the cache."""

    def __init__(self, root: Path, model: str, digest: str) -> None:
        self.digest = digest
        dirname = digest.replace(":", "-")
        self.path = root / model / dirname
        self.meta = self.path / ".llmflow"
        self.staging = self.meta / "partial"
        self.manifest_path = self.meta / "manifest.json"
        self.lock_path = root / model / ".locks" / f"{dirname}.lock"

    @contextmanager
    def locked(self, describe: str) -> Iterator[bool]:
        """Hold the entry's single-flight lock; yields whether we had to wait for another fetch."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path)
        waited = False
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another fetch of %s is in progress on this node; waiting for it", describe)
            waited = True
            lock.acquire()
        try:
            yield waited
        finally:
            lock.release()

    def read_manifest(self) -> Manifest | None:
        """The entry's manifest, or None while the entry is incomplete."""
        try:
            return Manifest.from_json(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            log.warning(
                "%s: unreadable manifest (%s); treating the entry as incomplete",
                self.manifest_path,
                exc,
            )
            return None

    def damaged_files(self, manifest: Manifest, mode: Verify) -> list[CachedFile]:
        """Files that no longer match the manifest.

        `stat` compares size and modification time (any write changes the latter), costing one
        stat per file; `full` re-hashes every byte, catching silent corruption too.
        """
        damaged = []
        for cached in manifest.files:
            if not self.file_is_intact(cached, mode):
                damaged.append(cached)
        return damaged

    def file_is_intact(self, cached: CachedFile, mode: Verify) -> bool:
        """Whether one cached file still matches its manifest record."""
        path = self.path / cached.path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        if stat.st_size != cached.size:
            return False
        if mode == "stat" and stat.st_mtime_ns == cached.mtime_ns:
            return True
        return file_checksum(path, cached.checksum_algorithm, cached.part_size) == cached.checksum

    def invalidate(self, damaged: list[CachedFile]) -> None:
        """Mark the entry incomplete (manifest first), then drop the damaged files."""
        self.manifest_path.unlink(missing_ok=True)
        for cached in damaged:
            (self.path / cached.path).unlink(missing_ok=True)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the manifest atomically; from this moment the entry is complete."""
        self.meta.mkdir(parents=True, exist_ok=True)
        tmp = self.meta / f"manifest.json.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)
        _fsync_dir(self.meta)

    def new_manifest(self, source: str, files: list[CachedFile], revision: str = "") -> Manifest:
        """A manifest for this entry, stamping each file's current modification time."""
        stamped = [
            CachedFile(**{**asdict(f), "mtime_ns": (self.path / f.path).stat().st_mtime_ns})
            for f in files
        ]
        return Manifest(
            source=source,
            digest=self.digest,
            files=stamped,
            created_at=time.time(),
            revision=revision,
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
