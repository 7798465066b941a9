"""How one file is cut into ranged chunks, and how its bytes are checked once downloaded.

Every file is fetched as parallel chunks, which are also the unit of retry and resume. Two
checksum forms match what S3 lists as the ETag:

- multipart (`<md5 of part md5s>-<parts>`): chunks follow the part boundaries, so each
  chunk's MD5 is a part digest computed while the chunk is in memory;
- whole-file MD5: chunks land out of order, so a hasher follows the contiguous prefix on disk
  (from the page cache) and finishes moments after the last chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from steps.weights.checksum import etag_parts, part_size_candidates
from steps.weights.sources import RemoteFile

log = logging.getLogger(__name__)


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
        part_size: 0 for a whole-file MD5 checksum; else the multipart form's part size, and
            chunks are exactly the parts.
        checked: Whether the checksum is compared with the source's ETag. False for local
            sources (whose tag is a version, not a checksum) and for multipart ETags whose part
            size cannot be inferred; the size is checked in every case.
        chunks: The byte ranges, in order.
    """

    file: RemoteFile
    part_size: int
    checked: bool
    chunks: tuple[Chunk, ...]


def plan_file(file: RemoteFile, chunk_size: int) -> FilePlan:
    """Cut a file into chunks whose checksum the source can confirm."""
    if file.etag_is_checksum:
        parts = etag_parts(file.etag)
        if parts == 0:
            return FilePlan(file, 0, True, _cut(file.size, chunk_size))
        candidates = part_size_candidates(file.size, parts)
        if candidates:
            return FilePlan(file, candidates[0], True, _cut(file.size, candidates[0]))
        log.warning(
            "%s: multipart ETag with %d parts fits no whole-MiB part size; checking its size only",
            file.path,
            parts,
        )
    return FilePlan(file, chunk_size, False, _cut(file.size, chunk_size))


def _cut(size: int, part_size: int) -> tuple[Chunk, ...]:
    if size == 0:
        return (Chunk(0, 0, 0),)
    return tuple(
        Chunk(i, offset, min(part_size, size - offset))
        for i, offset in enumerate(range(0, size, part_size))
    )
