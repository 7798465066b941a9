"""Store checksums as AWS and moto's server list them, verified end to end.

Multipart ETags (`<md5>-<parts>`) and S3's additional checksums (full-object CRCs, which a
single-part upload always has and a multipart upload has when S3 says FULL_OBJECT).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.errors import IntegrityError
from steps.weights.cache import CacheEntry
from steps.weights.checksum import MiB, chunk_hasher, combine_chunks, file_checksum
from steps.weights.fetch import fetch_model
from steps.weights.partial import PartialFile
from steps.weights.plan import plan_file
from steps.weights.sources import RemoteFile, open_source
from tests.conftest import tree_bytes
from workflows.local.s3 import free_port


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server: slow for big ranges, but it lists real multipart ETags."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def test_multipart_objects_are_verified_part_by_part(tmp_path: Path, moto: str) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.session.Session().client("s3", endpoint_url=moto)
    client.create_bucket(Bucket="models")
    data = hashlib.sha256(b"seed").digest() * (12 * MiB // 32 + 5)
    (tmp_path / "w.bin").write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_file(str(tmp_path / "w.bin"), "models", "m/w.bin", Config=config)

    [listed] = open_source("s3://models/m").list_files()
    assert listed.etag.endswith("-3")
    plan = plan_file(listed, 8 * MiB)
    assert plan.checked and plan.part_size == 5 * MiB and len(plan.chunks) == 3

    result = fetch_model("s3://models/m", tmp_path / "cache", "m", progress=False)
    assert tree_bytes(result.path) == {"w.bin": data}


def test_a_checksum_mismatch_discards_the_file(tmp_path: Path) -> None:
    data = b"weights" * 1000
    wrong = RemoteFile("w.bin", len(data), hashlib.md5(b"other").hexdigest())
    plan = plan_file(wrong, MiB)
    partial = PartialFile(plan, tmp_path / "entry" / "w.bin", tmp_path / "entry" / ".staging")
    partial.open()
    partial.write(0, memoryview(data))
    partial.record(plan.chunks[0], None)
    with pytest.raises(IntegrityError, match="the file was discarded, run again"):
        partial.finish()
    assert not (tmp_path / "entry" / "w.bin").exists()
    assert not any((tmp_path / "entry" / ".staging").iterdir())


def _upload(endpoint: str, folder: Path, files: dict[str, bytes], **extra: str) -> None:
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="models")
    for name, data in files.items():
        client.put_object(Bucket="models", Key=f"m/{name}", Body=data, **extra)


@pytest.mark.parametrize("algorithm", ["CRC64NVME", "CRC32C", "CRC32"])
def test_store_crcs_replace_the_md5(tmp_path: Path, moto: str, algorithm: str) -> None:
    data = hashlib.sha256(algorithm.encode()).digest() * (3 * MiB // 32 + 7)
    _upload(moto, tmp_path, {"w.bin": data, "config.json": b"{}"}, ChecksumAlgorithm=algorithm)

    source = open_source("s3://models/m")
    listed = source.list_files()
    assert all(not f.checksum for f in listed)  # the listing stays one call: no HEADs on a hit
    enriched = source.with_checksums(listed)
    crc = {f.path: f.checksum for f in enriched}
    assert crc["w.bin"].startswith(algorithm.lower() + ":")
    plan = plan_file(next(f for f in enriched if f.path == "w.bin"), MiB)
    assert plan.checked and plan.per_chunk and plan.algorithm == algorithm.lower()

    result = fetch_model("s3://models/m", tmp_path / "cache", "m", chunk_size=MiB, progress=False)
    assert tree_bytes(result.path) == {"w.bin": data, "config.json": b"{}"}
    manifest = CacheEntry(tmp_path / "cache", "m", result.digest).read_manifest()
    assert manifest is not None
    [record] = [f for f in manifest.files if f.path == "w.bin"]
    assert record.algorithm == algorithm.lower()
    assert f"{record.algorithm}:{record.checksum}" == crc["w.bin"]
    assert file_checksum(result.path / "w.bin", record.algorithm) == record.checksum


def test_a_crc_mismatch_discards_the_file(tmp_path: Path) -> None:
    data = b"weights" * 300_000
    path = tmp_path / "other"
    path.write_bytes(b"other" + data[5:])
    wrong = RemoteFile("w.bin", len(data), "v1", "crc64nvme:" + file_checksum(path, "crc64nvme"))
    plan = plan_file(wrong, 256 * 1024)
    partial = PartialFile(plan, tmp_path / "entry" / "w.bin", tmp_path / "entry" / ".staging")
    partial.open()

    for chunk in plan.chunks:
        block = memoryview(data)[chunk.offset : chunk.offset + chunk.length]
        hasher = chunk_hasher(plan.algorithm)
        hasher.update(block)
        partial.write(chunk.offset, block)
        partial.record(chunk, hasher.digest())
    with pytest.raises(IntegrityError, match="crc64nvme .* the file was discarded"):
        partial.finish()
    assert not (tmp_path / "entry" / "w.bin").exists()


def test_chunk_crcs_combine_to_the_whole_file_crc(tmp_path: Path) -> None:

    data = hashlib.sha256(b"x").digest() * 100_003
    path = tmp_path / "w"
    path.write_bytes(data)
    for algorithm in ("crc64nvme", "crc32c", "crc32"):
        plan = plan_file(RemoteFile("w", len(data), "v", f"{algorithm}:00"), 1_000_000)
        digests = []
        for chunk in plan.chunks:
            hasher = chunk_hasher(algorithm)
            hasher.update(data[chunk.offset : chunk.offset + chunk.length])
            digests.append(hasher.digest())
        combined = combine_chunks(algorithm, digests, [c.length for c in plan.chunks])
        assert combined == file_checksum(path, algorithm)
        assert combined == file_checksum(path, algorithm, 1_000_003)
