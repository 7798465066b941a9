"""How one file is cut into ranged chunks, and how its bytes are checked once downloaded.

Chunks follow the source's multipart boundaries when the ETag is multipart, so the MD5 of
each chunk is a part digest and the file's ETag follows without a second read. A whole-file
MD5 cannot be computed out of order, so such a file is one chunk streamed front to back;
files are still fetched in parallel with each other.
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
        part_size: Bytes per chunk; 0 means one chunk whose MD5 is the whole-file MD5.
        checked: Whether the result is compared with the source's ETag. False for local
            sources (whose tag is a version, not a checksum) and for multipart ETags whose part
            size cannot be inferred; the size is checked in every case.
        chunks: The byte ranges, in order.
    """

    file: RemoteFile
    part_size: int
    checked: bool
    chunks: tuple[Chunk, ...]


def plan_file(file: RemoteFile, chunk_size: int) -> FilePlan:
    """Cut a file into chunks whose MD5s make up a checksum the source can confirm."""
    if file.etag_is_checksum:
        parts = etag_parts(file.etag)
        if parts == 0:
            return FilePlan(file, 0, True, (Chunk(0, 0, file.size),))
        candidates = part_size_candidates(file.size, parts)
        if candidates:
            return FilePlan(file, candidates[0], True, _cut(file.size, candidates[0]))
        log.warning(
            "%s: multipart ETag with %d parts fits no whole-MiB part size; "
            "checking its size only",
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
