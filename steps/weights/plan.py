"""How one file is cut into ranged chunks, and how its bytes are checked once downloaded.

Every file is fetched as parallel chunks, which are also the unit of retry and resume. The
check is the cheapest one the source can confirm, in this order:

- a CRC the source declares (`RemoteFile.checksum`): each chunk's CRC is computed while the
  chunk is in memory and the CRCs are combined at the end;
- an ordered hash the source declares (SHA-256 of Hub LFS files, git blob ids): a hasher
  follows the contiguous prefix of finished chunks on disk (from the page cache);
- the S3 ETag: for a multipart ETag (`<md5 of part md5s>-<parts>`) chunks follow the part
  boundaries and each chunk's MD5 is a part digest; a whole-file MD5 is followed like an
  ordered hash;
- nothing to confirm (local files, unguessable multipart part sizes): the size is checked, and
  a CRC of what was written is recorded so `verify: full` can later detect corruption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from steps.weights.checksum import (
    CRC_ALGORITHMS,
    ETAG_MD5,
    ETAG_PARTS,
    ORDERED_ALGORITHMS,
    etag_parts,
    part_size_candidates,
    split_checksum,
)
from steps.weights.sources import RemoteFile

log = logging.getLogger(__name__)

#: Recorded for files the source gives no checksum for: cheap, and catches later corruption.
UNCHECKED_ALGORITHM = "crc64nvme"


@dataclass(frozen=True)
class Chunk:
    """A byte range of one file; the unit of transfer, retry and resume."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class FilePlan:
    """How to fetch and check one file.

    Attributes:
        file: The file as listed.
        algorithm: The checksum computed while downloading (`steps.weights.checksum`).
        expected: The value the source declares for it; "" when nothing can be confirmed.
        part_size: For `md5-parts`, the multipart upload's part size, which the chunks follow;
            else 0.
        chunks: The byte ranges, in order.
    """

    file: RemoteFile
    algorithm: str
    expected: str
    part_size: int
    chunks: tuple[Chunk, ...]

    @property
    def checked(self) -> bool:
        """Whether the bytes are compared with a checksum the source declares."""
        return bool(self.expected)

    @property
    def per_chunk(self) -> bool:
        """Whether each chunk gets its own digest, combined at the end (else one ordered hash)."""
        return self.algorithm == ETAG_PARTS or self.algorithm in CRC_ALGORITHMS


def plan_file(file: RemoteFile, chunk_size: int) -> FilePlan:
    """Cut a file into chunks and pick the cheapest checksum the source can confirm."""
    algorithm, value = split_checksum(file.checksum)
    if algorithm in CRC_ALGORITHMS or algorithm in ORDERED_ALGORITHMS:
        return FilePlan(file, algorithm, value, 0, _cut(file.size, chunk_size))
    if algorithm:
        log.warning("%s: unknown checksum %r; checking the ETag instead", file.path, algorithm)
    if file.etag_is_checksum:
        parts = etag_parts(file.etag)
        if parts == 0:
            return FilePlan(file, ETAG_MD5, file.etag, 0, _cut(file.size, chunk_size))
        candidates = part_size_candidates(file.size, parts)
        if candidates:
            size = candidates[0]
            return FilePlan(file, ETAG_PARTS, file.etag, size, _cut(file.size, size))
        log.warning(
            "%s: multipart ETag with %d parts fits no whole-MiB part size; checking its size only",
            file.path,
            parts,
        )
    return FilePlan(file, UNCHECKED_ALGORITHM, "", 0, _cut(file.size, chunk_size))


def _cut(size: int, part_size: int) -> tuple[Chunk, ...]:
    if size == 0:
        return (Chunk(0, 0, 0),)
    return tuple(
        Chunk(i, offset, min(part_size, size - offset))
        for i, offset in enumerate(range(0, size, part_size))
    )
