"""The weights fetcher against a Hub stand-in (tests/hub_server.py): hf:// sources end to end."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from steps.errors import IntegrityError, SourceError, TransferError
from steps.weights.cache import CacheEntry, listing_digest
from steps.weights.checksum import MiB
from steps.weights.fetch import fetch_model
from steps.weights.sources import open_source
from tests.conftest import tree_bytes
from tests.hub_repo import lfs_object, publish, set_access
from tests.hub_server import LocalHub
from workflows.cli import main

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")
TOKENS = {"alice": "hf_alice_0123456789", "bob": "hf_bob_0123456789"}


def random_files(sizes: dict[str, int], seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {rel: rng.randbytes(size) for rel, size in sizes.items()}


MODEL = random_files(
    {
        "config.json": 700,
        "tokenizer.json": 20_000,
        "model-00001-of-00002.safetensors": 3 * MiB + 17,
        "model-00002-of-00002.safetensors": 2 * MiB,
        "nested/extra.bin": 0,
    }
)


@pytest.fixture(autouse=True)
def _no_real_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests away from a token or mirror configured on the machine."""
    for key in list(os.environ):
        if key.startswith("HF_") or key.startswith("HUGGING_FACE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """The stand-in with `org/tiny` published, and HF_ENDPOINT / HF_TOKEN (alice's) set."""
    server = LocalHub(tmp_path / "hub", TOKENS)
    publish(server.root, "org/tiny", MODEL)
    with server:
        for key, value in server.env("alice").items():
            monkeypatch.setenv(key, value)
        yield server


def fetch(cache: Path, uri: str = "hf://org/tiny@main", **kwargs):
    return fetch_model(uri, cache, "tiny", progress=False, chunk_size=MiB, **kwargs)


def manifest(result) -> dict:
    return json.loads((result.path / ".llmflow" / "manifest.json").read_text())


def listings(hub: LocalHub) -> list[dict]:
    return [r for r in hub.requests() if r["path"].startswith("/api/models/")]


def ours(hub: LocalHub) -> list[dict]:
    """Requests of the fetch (huggingface_hub may also ask for its agent registry)."""
    return [r for r in hub.requests() if r["path"] != "/api/agent-harnesses"]


def test_fetch_is_byte_identical_and_records_the_commit(tmp_path, hub) -> None:
    commit = publish(hub.root, "org/tiny", {}, message="empty commit: main moves on")
    result = fetch(tmp_path / "cache", concurrency=1)
    assert tree_bytes(result.path) == MODEL
    assert result.downloaded_bytes == result.total_bytes == sum(map(len, MODEL.values()))
    assert manifest(result)["revision"] == commit
    assert manifest(result)["source"] == "hf://org/tiny@main"

    requests = ours(hub)
    [listing] = listings(hub)
    assert (
        listing["path"] == "/api/models/org/tiny/revision/main" and listing["auth"] == "user:alice"
    )
    reads = [r for r in requests if "/resolve/" in r["path"]]
    assert {r["path"].split("/")[4] for r in reads} == {commit}  # every read pinned to the sha
    assert all(r["auth"] == "user:alice" for r in requests if r["server"] == "hub")
    cdn = [r for r in requests if r["server"] == "cdn"]
    assert cdn and all(r["auth"] == "none" and r["status"] == 206 for r in cdn)
    # An LFS file is resolved once, then its chunks are read straight from the storage host.
    resolved = [r for r in reads if r["path"].endswith(".safetensors")]
    assert [r["status"] for r in resolved] == [302, 302] and len(cdn) == 4 + 2

    hub.clear()
    again = fetch(tmp_path / "cache")
    assert again.cache_hit and again.downloaded_bytes == 0 and again.path == result.path
    assert [r["path"] for r in ours(hub)] == ["/api/models/org/tiny/revision/main"]


def test_revisions_resolve_to_their_commits(tmp_path, hub) -> None:
    v1 = publish(hub.root, "org/tiny", {}, tag="v1")
    changed = {"config.json": b'{"changed": true}'}
    v2 = publish(hub.root, "org/tiny", changed, remove=("nested/extra.bin",))
    main = fetch(tmp_path / "cache")
    old = fetch(tmp_path / "cache", "hf://org/tiny@v1")
    assert manifest(main)["revision"] == v2 and manifest(old)["revision"] == v1
    assert tree_bytes(old.path) == MODEL
    expected = {k: v for k, v in {**MODEL, **changed}.items() if k != "nested/extra.bin"}
    assert tree_bytes(main.path) == expected
    assert old.digest != main.digest
    pinned = fetch(tmp_path / "cache", f"hf://org/tiny@{v1}")  # the same content: a cache hit
    assert pinned.cache_hit and pinned.path == old.path


def test_checksums_come_from_the_listing(hub) -> None:
    source = open_source("hf://org/tiny@main")
    files = {f.path: f for f in source.list_files()}
    import hashlib

    shard = "model-00001-of-00002.safetensors"
    assert files[shard].checksum == f"sha256:{hashlib.sha256(MODEL[shard]).hexdigest()}"
    blob = b"blob %d\0" % len(MODEL["config.json"]) + MODEL["config.json"]
    assert files["config.json"].checksum == f"git-sha1:{hashlib.sha1(blob).hexdigest()}"
    assert files["config.json"].size == 700 and files[shard].size == 3 * MiB + 17


@pytest.mark.parametrize(
    ("uri", "user", "message"),
    [
        ("hf://org/absent@main", "alice", "repository 'org/absent' not found"),
        ("hf://org/tiny@nope", "alice", "revision 'nope' does not exist in org/tiny"),
        ("hf://org/private@main", "bob", "private and the token cannot see it"),
        ("hf://org/private@main", "", "no HF_TOKEN is set"),
        ("hf://org/gated@main", "bob", "org/gated is a gated model; accept its conditions"),
    ],
)
def test_bad_sources_say_what_to_fix(tmp_path, hub, monkeypatch, uri, user, message) -> None:
    publish(hub.root, "org/private", {"config.json": b"{}"})
    set_access(hub.root, "org/private", private=True, granted=("alice",))
    publish(hub.root, "org/gated", {"model.safetensors": b"x" * 1000})
    set_access(hub.root, "org/gated", gated=True, granted=("alice",))
    if user:
        monkeypatch.setenv("HF_TOKEN", TOKENS[user])
    else:
        monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SourceError) as info:
        fetch(tmp_path / "cache", uri)
    assert message in str(info.value) and uri in str(info.value)
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_granted_user_reads_private_and_gated_models(tmp_path, hub) -> None:
    publish(hub.root, "org/gated", {"model.safetensors": b"x" * 1000})
    set_access(hub.root, "org/gated", private=True, gated=True, granted=("alice",))
    result = fetch(tmp_path / "cache", "hf://org/gated@main")
    assert tree_bytes(result.path) == {"model.safetensors": b"x" * 1000}


def test_wrong_token_is_a_clear_source_error(tmp_path, hub, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_42")
    with pytest.raises(SourceError) as info:
        fetch(tmp_path / "cache")
    message = str(info.value)
    assert "the Hub refused the token (HTTP 401" in message
    assert "check the Secret that sets HF_TOKEN" in message
    assert "hf_not_a_real_token_42" not in message
    assert not (tmp_path / "cache").exists()
    assert [r["auth"] for r in listings(hub)] == ["invalid"]  # a refused token is not retried


def test_unreachable_endpoint_is_a_transfer_error(tmp_path, hub) -> None:
    hub.stop()
    with pytest.raises(TransferError, match=r"cannot reach http://127\.0\.0\.1:\d+ .*HF_ENDPOINT"):
        fetch(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_bad_endpoint_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "huggingface.co")
    with pytest.raises(SourceError, match="HF_ENDPOINT='huggingface.co' is not an http"):
        fetch(tmp_path / "cache")


def test_dropped_connection_resumes_byte_identical(tmp_path, hub) -> None:
    """Kill the server mid-file; the next run keeps the finished chunks and completes."""
    contents = random_files({"big.safetensors": 48 * MiB, "config.json": 100}, seed=3)
    publish(hub.root, "org/big", contents)
    uri = "hf://org/big@main"
    cache = tmp_path / "cache"
    digest = listing_digest(open_source(uri).list_files())
    journal = CacheEntry(cache, "tiny", digest).staging / "big.safetensors.journal"
    outcome: dict[str, object] = {}

    def first_run() -> None:
        try:
            outcome["result"] = fetch(cache, uri, concurrency=1)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 4:  # header + 3 chunks
            break
        time.sleep(0.002)
    hub.kill()
    thread.join(60)
    assert isinstance(outcome.get("error"), TransferError), outcome
    assert not any(p.name == "manifest.json" for p in cache.rglob("*"))

    hub.start()
    result = fetch(cache, uri, concurrency=4)
    assert 3 * MiB <= result.resumed_bytes < 48 * MiB
    assert result.downloaded_bytes == result.total_bytes - result.resumed_bytes
    assert tree_bytes(result.path) == contents


def test_an_expired_signed_url_is_resolved_again(hub) -> None:
    """A restarted Hub signs with a new key: the remembered storage URL is refused (403)."""
    source = open_source("hf://org/tiny@main")
    shard = next(f for f in source.list_files() if f.path.endswith("1-of-00002.safetensors"))
    reader = source.reader()
    got = bytearray(shard.size)

    def sink(offset: int, block: memoryview) -> None:
        got[offset : offset + len(block)] = block

    buffer = memoryview(bytearray(MiB))
    reader.read_range(shard, 0, MiB, buffer, sink)
    hub.stop()
    hub.start()
    hub.clear()
    reader.read_range(shard, MiB, shard.size - MiB, buffer, sink)
    reader.close()
    assert bytes(got) == MODEL[shard.path]
    steps = [(r["server"], r["status"]) for r in ours(hub)]
    assert steps == [("cdn", 403), ("hub", 302), ("cdn", 206)]


def test_corrupted_cached_file_is_refetched_with_full_verification(tmp_path, hub) -> None:
    first = fetch(tmp_path / "cache")
    shard = first.path / "model-00002-of-00002.safetensors"
    stat = shard.stat()
    data = bytearray(shard.read_bytes())
    data[5] ^= 0x01
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # bit rot keeps the times
    assert fetch(tmp_path / "cache").cache_hit  # `stat` cannot see it ...
    second = fetch(tmp_path / "cache", verify="full")  # ... `full` does
    assert second.downloaded_bytes == len(MODEL[shard.name])
    assert tree_bytes(second.path) == MODEL


def test_corrupted_served_byte_is_an_integrity_error(tmp_path, hub) -> None:
    import hashlib

    name = "model-00002-of-00002.safetensors"
    stored = lfs_object(hub.root / "org" / "tiny", hashlib.sha256(MODEL[name]).hexdigest())
    data = bytearray(stored.read_bytes())
    data[MiB + 3] ^= 0x40  # the storage host's copy rots; the listing still names the original
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=name):
        fetch(tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("manifest.json"))
    assert not list((tmp_path / "cache").rglob(name))


def test_mirror_without_file_metadata_is_listed_through_the_tree(tmp_path, monkeypatch) -> None:
    """Mirrors such as olah answer the model info without sizes: the tree listing fills in."""
    server = LocalHub(tmp_path / "hub", TOKENS, no_blobs=True)
    commit = publish(server.root, "org/tiny", MODEL)
    with server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        result = fetch(tmp_path / "cache")
        paths = [r["path"] for r in listings(server)]
    assert paths == ["/api/models/org/tiny/revision/main", f"/api/models/org/tiny/tree/{commit}"]
    assert tree_bytes(result.path) == MODEL and manifest(result)["revision"] == commit


def test_llmflow_fetch_command(tmp_path, hub) -> None:
    out = CliRunner().invoke(
        main, ["fetch", "hf://org/tiny@main", "--cache", str(tmp_path / "c"), "--name", "tiny"]
    )
    assert out.exit_code == 0, out.output
    path = Path(out.output.split("path: ")[1].split()[0])
    assert tree_bytes(path) == MODEL and "digest: sha256:" in out.output
    wrong = CliRunner().invoke(
        main,
        ["fetch", "hf://org/tiny@nope", "--cache", str(tmp_path / "c"), "--name", "tiny"],
    )
    assert wrong.exit_code == 2 and "error: source 'hf://org/tiny@nope'" in wrong.output


def test_fetch_step_reads_the_hub_settings_from_the_named_secret() -> None:
    from workflows.render import render
    from workflows.spec import load_spec

    spec = load_spec(ROOT / "releases" / "tiny.yaml")
    workflow = yaml.safe_load(yaml.safe_dump(render("fetch-weights", spec)))
    params = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["hf-secret"] == spec.storage.hf_token_secret == "llmflow-hf"
    step = next(t for t in workflow["spec"]["templates"] if t["name"] == "fetch-weights")
    env = {e["name"]: e for e in step["script"]["env"]}
    for key in ("HF_TOKEN", "HF_ENDPOINT"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "{{workflow.parameters.hf-secret}}", "key": key, "optional": True}


@pytest.mark.model
def test_fetch_weights_pipeline_runs_locally_against_the_hub(tmp_path, hub, tiny_model) -> None:
    files = {p.relative_to(tiny_model).as_posix(): p.read_bytes() for p in tiny_model.iterdir()}
    commit = publish(hub.root, "llmflow/tiny-llama", files)
    root = tmp_path / "root"
    result = subprocess.run(
        [
            *(LLMFLOW, "run", "fetch-weights", "-f", "releases/tiny.yaml", "--root", str(root)),
            *("--set", "source=hf://llmflow/tiny-llama@main"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **hub.env("alice")},
    )
    assert result.returncode == 0, result.stderr
    [run_dir] = (root / "runs").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    step = next(n for n in status["nodes"].values() if n["templateName"] == "fetch-weights")
    outputs = {p["name"]: p["value"] for p in step["outputs"]["parameters"]}
    cache = Path(outputs["path"])
    assert cache.is_relative_to(root / "volumes" / "pvc" / "llmflow-model-cache" / "tiny-llama")
    assert tree_bytes(cache) == files
    assert json.loads((cache / ".llmflow" / "manifest.json").read_text())["revision"] == commit
    assert outputs["cache-hit"] == "false"
    # The token reached the step (from the environment, as the Secret llmflow-hf is not
    # created locally) and appears in nothing the run wrote.
    assert {r["auth"] for r in listings(hub)} == {"user:alice"}
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKENS["alice"].encode() in p.read_bytes()]
