"""Shared fixtures: upstream schemas, real S3 servers, the tiny model."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vllm_server import vllm_tiny  # noqa: F401
from workflows.local.s3 import LocalS3
from workflows.validation import SchemaRegistry

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared" / "schemas"


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every process a test started under its temporary folders (servers the local platform
    keeps running: vLLM, nginx, Prometheus) is gone when the session ends.

    Tests stop what they start (`llmflow local down`); this is the net under them, and it says
    what it had to stop, so a test that leaks is found.
    """
    yield
    base = str(tmp_path_factory.getbasetemp())
    leaked = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if base in cmdline:
            leaked.append((int(proc.name), cmdline[:160]))
    for pid, _ in leaked:
        try:  # the whole group: vLLM's engine and workers rename themselves (VLLM::Worker)
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leaked:
        print(f"\nstopped {len(leaked)} process(es) tests left running:", *leaked, sep="\n  ")


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    """The upstream schema files; their absence fails the tests that need them."""
    marker = SCHEMAS / "argo-workflows" / "schema-v4.1.2.json"
    if not marker.is_file():
        pytest.fail(f"upstream schemas missing: {marker} not found (expected ../shared/schemas)")
    return SCHEMAS


@pytest.fixture(scope="session")
def registry(schemas_dir: Path) -> SchemaRegistry:
    return SchemaRegistry.load(schemas_dir)


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalS3]:
    """A real s3rver with bucket `models`, and the AWS variables pointing at it."""
    server = LocalS3(tmp_path / "s3data", buckets=("models",))
    with server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from steps.tiny_model import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def fine_tuned(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model fully fine-tuned on the training pairs (200 steps, about 10 s)."""
    import torch

    from steps.tiny_data import DATASET
    from steps.train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains several times faster on one thread here

    out = tmp_path_factory.mktemp("ft") / "run"
    main(
        [
            *("--model", str(tiny_model), "--data", str(DATASET / "train.jsonl")),
            *("--output", f"file://{out}", "--epochs", "20", "--checkpoint-every", "0"),
            "--no-progress",
        ]
    )
    torch.set_num_threads(threads)
    return out / "final"


def make_files(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, bytes]:
    """Write files of pseudo-random bytes; returns their contents by relative path."""
    import random

    rng = random.Random(seed)
    contents = {}
    for rel, size in sizes.items():
        data = rng.randbytes(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[rel] = data
    return contents


def upload(client: object, bucket: str, prefix: str, contents: dict[str, bytes]) -> None:
    for rel, data in contents.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)  # type: ignore[attr-defined]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below root except llmflow's own metadata."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".llmflow" not in p.relative_to(root).parts
    }


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from any AWS account configured on the machine."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(
        "AWS_EC2_METADATA_DISABLED", "true"
    )  # never ask an instance metadata service
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
