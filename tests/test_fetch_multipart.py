"""Multipart ETags (`<md5>-<parts>`), as AWS and moto's server list them, verified end to end."""

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
from steps.weights.checksum import MiB
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
