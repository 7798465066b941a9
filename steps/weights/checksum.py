"""Checksums a source declares, and how to compute them while bytes stream past.

Three families, chosen per file by what the source lists (`steps.weights.plan`):

- S3 ETags: a whole-file MD5, or for multipart uploads the MD5 of per-part MD5s followed by
  `-<parts>`. The part size is not listed, so it is inferred from the part count; downloads
  then cut chunks on the same boundaries and each chunk's MD5 is a part digest.
- CRCs (`crc64nvme`, `crc32c`, `crc32`): S3's additional checksums, which AWS stores for every
  object uploaded since December 2024. A CRC is computed per chunk while the chunk is in memory
  and the chunks' CRCs are combined arithmetically, so nothing is read twice; at under 0.2
  CPU-s/GB CRC64-NVME costs a tenth of MD5.
- Ordered hashes (`sha256`, `sha1`, `git-sha1`, `md5`): the Hugging Face Hub's LFS SHA-256 and
  git blob ids. They must see the bytes in order, so a hasher follows the finished prefix.

Values are lowercase hex everywhere (S3 sends CRCs as base64 of big-endian bytes).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from awscrt import checksums as crt

MiB = 1024 * 1024

#: Part sizes tools upload with (boto3/awscli 8 MiB, the S3 minimum 5 MiB, common 16/64 MiB).
_COMMON_PART_SIZES = (8 * MiB, 5 * MiB, 16 * MiB, 64 * MiB, 100 * MiB, 128 * MiB)

#: Whole-file MD5 compared with a plain ETag.
ETAG_MD5 = "md5"
#: Multipart ETag: the MD5 of the parts' MD5s.
ETAG_PARTS = "md5-parts"

#: A CRC's function over bytes (continuing from a previous value), its combine, its width.
_CrcImpl = tuple[Callable[[bytes | memoryview, int], int], Callable[[int, int, int], int], int]
_CRC: dict[str, _CrcImpl] = {
    "crc64nvme": (crt.crc64nvme, crt.combine_crc64nvme, 8),
    "crc32c": (crt.crc32c, crt.combine_crc32c, 4),
    "crc32": (crt.crc32, crt.combine_crc32, 4),
}

#: Checksums computed per chunk and combined: any chunk order, no second read.
CRC_ALGORITHMS = tuple(_CRC)
#: Checksums that need the bytes in order.
ORDERED_ALGORITHMS = ("sha256", "sha1", "git-sha1", ETAG_MD5)
#: Every algorithm a `RemoteFile.checksum` may name.
ALGORITHMS = CRC_ALGORITHMS + ORDERED_ALGORITHMS


class Hasher(Protocol):
    """The part of hashlib's interface the downloader uses."""

    def update(self, data: bytes | memoryview, /) -> None:
        """Feed the next bytes."""

    def digest(self) -> bytes:
        """The digest of everything fed so far."""

    def hexdigest(self) -> str:
        """`digest()` in lowercase hex."""


class _CrcHasher:
    """A CRC with hashlib's interface, so a chunk's CRC is computed like a part's MD5."""

    def __init__(self, algorithm: str) -> None:
        self._fn, _, self._width = _CRC[algorithm]
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._crc = self._fn(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._width, "big")

    def hexdigest(self) -> str:
        return self.digest().hex()


def split_checksum(checksum: str) -> tuple[str, str]:
    """`"sha256:ab12"` -> `("sha256", "ab12")`; `""` -> `("", "")`."""
    algorithm, _, value = checksum.partition(":")
    return (algorithm, value.lower()) if value else ("", "")


def s3_checksum(algorithm: str, header_value: str) -> str:
    """A `RemoteFile.checksum` from S3's `x-amz-checksum-<algorithm>` value (base64)."""
    return f"{algorithm}:{base64.b64decode(header_value).hex()}"


def chunk_hasher(algorithm: str) -> Hasher:
    """The per-chunk hasher of a chunked algorithm (`md5-parts` or a CRC)."""
    if algorithm == ETAG_PARTS:
        return hashlib.md5()
    return _CrcHasher(algorithm)


def ordered_hasher(algorithm: str, size: int) -> Hasher:
    """A hasher for an ordered algorithm; `git-sha1` is primed with git's blob header."""
    if algorithm == "git-sha1":
        hasher = hashlib.sha1()
        hasher.update(f"blob {size}\0".encode())
        return hasher
    return hashlib.new(algorithm)


def combine_chunks(algorithm: str, digests: Sequence[bytes], lengths: Sequence[int]) -> str:
    """The file's checksum from its chunks' digests, in order."""
    if algorithm == ETAG_PARTS:
        return combine(list(digests))
    _, join, width = _CRC[algorithm]
    crc = 0
    for digest, length in zip(digests, lengths, strict=True):
        crc = join(crc, int.from_bytes(digest, "big"), length)
    return crc.to_bytes(width, "big").hex()


def etag_parts(etag: str) -> int:
    """Number of parts in a multipart ETag, or 0 for a whole-file MD5."""
    _, sep, count = etag.partition("-")
    return int(count) if sep and count.isdigit() else 0


def part_size_candidates(size: int, parts: int) -> list[int]:
    """Whole-MiB part sizes that cut `size` bytes into exactly `parts` parts, likeliest first."""
    if parts <= 0:
        return []
    if parts == 1:
        return [max(size, 1)]
    low = math.ceil(size / parts / MiB)
    high = math.ceil(size / (parts - 1) / MiB)
    found = [p * MiB for p in range(max(low, 1), high + 1) if math.ceil(size / (p * MiB)) == parts]
    common = [p for p in _COMMON_PART_SIZES if p in found]
    return common + [p for p in found if p not in common]


def combine(part_digests: list[bytes]) -> str:
    """The ETag of a multipart object from the binary MD5s of its parts."""
    return f"{hashlib.md5(b''.join(part_digests)).hexdigest()}-{len(part_digests)}"


def file_checksum(path: Path, algorithm: str, part_size: int = 0, block: int = 8 * MiB) -> str:
    """Recompute a file's checksum from disk, in the form `combine_chunks` or a hasher gives.

    `part_size` cuts the file into the chunks the checksum was computed on (multipart ETags,
    CRCs); any cut gives the same CRC, so it only matters for `md5-parts`.
    """
    chunked = algorithm == ETAG_PARTS or algorithm in CRC_ALGORITHMS
    size = path.stat().st_size
    whole = None if chunked else ordered_hasher(algorithm, size)
    digests: list[bytes] = []
    lengths: list[int] = []
    part, in_part = (chunk_hasher(algorithm), 0) if chunked else (None, 0)
    step = min(block, part_size) if chunked and part_size else block
    with open(path, "rb", buffering=0) as f:
        view = memoryview(bytearray(step))
        while True:
            want = step if not (chunked and part_size) else min(step, part_size - in_part)
            n = f.readinto(view[:want])
            if not n:
                break
            if whole is not None:
                whole.update(view[:n])
                continue
            assert part is not None
            part.update(view[:n])
            in_part += n
            if part_size and in_part == part_size:
                digests.append(part.digest())
                lengths.append(in_part)
                part, in_part = chunk_hasher(algorithm), 0
    if whole is not None:
        return whole.hexdigest()
    assert part is not None
    if in_part or not digests:
        digests.append(part.digest())
        lengths.append(in_part)
    return combine_chunks(algorithm, digests, lengths)


def file_etag(path: Path, part_size: int, block: int = 8 * MiB) -> str:
    """Recompute a file's S3 ETag: whole-file MD5 if `part_size` is 0, else the multipart form."""
    if part_size:
        return file_checksum(path, ETAG_PARTS, part_size, block)
    return file_checksum(path, ETAG_MD5, 0, block)
