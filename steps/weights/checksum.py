"""S3-style checksums: a whole-file MD5, or the MD5 of per-part MD5s for multipart uploads.

Matching the store's own ETag lets us verify every byte against what the source declares
without asking it for anything beyond the listing. For multipart ETags the part size is not
listed, so it is inferred from the part count; downloads then cut chunks on the same
boundaries, so each chunk's MD5 is computed while the chunk is still in memory and no file is
read twice.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

MiB = 1024 * 1024

#: Part sizes tools upload with (boto3/awscli 8 MiB, the S3 minimum 5 MiB, common 16/64 MiB).
_COMMON_PART_SIZES = (8 * MiB, 5 * MiB, 16 * MiB, 64 * MiB, 100 * MiB, 128 * MiB)


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


def file_etag(path: Path, part_size: int, block: int = 8 * MiB) -> str:
    """Recompute a file's ETag: whole-file MD5 if `part_size` is 0, else the multipart form."""
    whole = hashlib.md5()
    parts: list[bytes] = []
    part = hashlib.md5()
    in_part = 0
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(block)
        view = memoryview(buffer)
        while True:
            want = block if not part_size else min(block, part_size - in_part)
            n = f.readinto(view[:want])
            if not n:
                break
            if part_size:
                part.update(view[:n])
                in_part += n
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.md5(), 0
            else:
                whole.update(view[:n])
    if not part_size:
        return whole.hexdigest()
    if in_part or not parts:
        parts.append(part.digest())
    return combine(parts)
