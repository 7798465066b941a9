"""The pooled local store: several s3rver processes behind nginx answer as one S3 endpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from steps.weights.fetch import fetch_model
from tests.conftest import tree_bytes
from workflows.local.s3_pool import LocalS3Pool


def test_signed_requests_are_spread_over_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"shard-{i}.bin": os.urandom(300_000 + i) for i in range(6)}
    with LocalS3Pool(tmp_path / "s3", buckets=("models",), processes=2) as pool:
        client = pool.client()
        for name, data in files.items():
            client.put_object(Bucket="models", Key=f"m/{name}", Body=data)
        for key, value in pool.env().items():
            monkeypatch.setenv(key, value)
        result = fetch_model(
            "s3://models/m", tmp_path / "cache", "m", chunk_size=64 * 1024, progress=False
        )
        assert tree_bytes(result.path) == files
        assert len(pool.pids) > len(pool.servers)  # nginx and its workers are accounted for
    deadline = time.monotonic() + 5
    log = tmp_path / "s3" / ".pool" / "access.log"
    while time.monotonic() < deadline and not log.exists():
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    ranged = [line for line in lines if line.startswith("GET /models/m/") and " 206 " in line]
    assert len(ranged) >= 6 * 4  # every chunk through nginx, signatures intact (no 403)
    served_by = {line.rsplit("upstream=", 1)[1] for line in ranged}
    assert served_by == {f"127.0.0.1:{s.port}" for s in pool.servers}
    assert not [line for line in lines if " 403 " in line]
