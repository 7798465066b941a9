import hashlib
from pathlib import Path

import pytest

from steps.weights.checksum import MiB, combine, etag_parts, file_etag, part_size_candidates
from steps.weights.plan import plan_file
from steps.weights.sources import RemoteFile


def multipart_etag(data: bytes, part: int) -> str:
    return combine([hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)])


def test_part_size_is_inferred_from_size_and_count() -> None:
    size = 100 * MiB + 5
    assert part_size_candidates(size, 13)[0] == 8 * MiB
    assert part_size_candidates(size, 1) == [size]
    assert part_size_candidates(size, 0) == []
    assert all(-(-size // p) == 13 for p in part_size_candidates(size, 13))


def test_file_etag_matches_both_s3_forms(tmp_path: Path) -> None:
    data = bytes(range(256)) * (20 * 4096 + 3)  # ~20 MiB, not a multiple of the part size
    path = tmp_path / "f"
    path.write_bytes(data)
    assert file_etag(path, 0) == hashlib.md5(data).hexdigest()
    assert file_etag(path, 8 * MiB) == multipart_etag(data, 8 * MiB)
    assert etag_parts(multipart_etag(data, 8 * MiB)) == 3


@pytest.mark.parametrize("size", [0, 1, 8 * MiB, 8 * MiB + 1])
def test_plans_cover_every_byte_once(size: int) -> None:
    plan = plan_file(RemoteFile("f", size, "d41d8cd98f00b204e9800998ecf8427e"), 8 * MiB)
    assert plan.part_size == 0 and plan.checked
    assert sum(c.length for c in plan.chunks) == size
    assert [c.offset for c in plan.chunks] == sorted({c.offset for c in plan.chunks})


def test_multipart_plan_follows_the_parts() -> None:
    etag = "0" * 32 + "-3"
    plan = plan_file(RemoteFile("f", 20 * MiB, etag), 4 * MiB)
    assert plan.part_size == 8 * MiB and plan.checked
    assert [c.length for c in plan.chunks] == [8 * MiB, 8 * MiB, 4 * MiB]


def test_version_tags_are_not_taken_for_checksums() -> None:
    plan = plan_file(RemoteFile("f", 10, "a-17c"), 4)
    assert not plan.checked
    assert len(plan.chunks) == 3
