"""`llmflow run build-images` for real: buildah builds, a local registry, content-tag skips.

The source is a git repository made from this checkout's files; the public base images are
replaced by a stand-in OCI archive built from scratch (`workflows/local/bases.py`), and torch
comes from a local stand-in of its wheel index. Three runs: the first builds and pushes both
images, the second (after a change to a file no image copies) builds nothing, the third
(after a change to a file only the steps image copies) rebuilds only the steps image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workflows.local.bases import build_python_base
from workflows.local.build_storage import BuildStorage
from workflows.local.registry import LocalRegistry
from workflows.local.wheels import LocalWheelIndex, find_torch_wheel

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "llmflow")
if not Path(LLMFLOW).exists():
    LLMFLOW = shutil.which("llmflow") or LLMFLOW

pytestmark = pytest.mark.timeout(2400)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _source_repo(dest: Path) -> Path:
    """A git repository holding this checkout's files as they are now, one commit."""
    files = _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    _git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "source")
    return dest


def _commit_change(repo: Path, rel: str) -> None:
    with (repo / rel).open("a") as f:
        f.write("\n# changed\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", f"edit {rel}")


@pytest.fixture(scope="module")
def build_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A source repository, a registry, a torch index and buildah storage of the module's own."""
    tmp = tmp_path_factory.mktemp("images")
    repo = _source_repo(tmp / "src")
    build_python_base(repo / ".llmflow" / "bases" / "python.tar", tmp / "base-storage")
    find_links = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split()]
    wheel = find_torch_wheel(find_links)
    assert wheel is not None, f"no torch 2.13.0 CPU wheel in {find_links} to serve"
    with (
        BuildStorage(tmp / "storage", driver="overlay") as storage,
        LocalRegistry(tmp / "registry") as registry,
        LocalWheelIndex([wheel], tmp / "index") as index,
    ):
        env = {**os.environ, **storage.env()}
        yield {"repo": repo, "env": env, "registry": registry, "index": index, "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)  # the registry's blobs and the base: GBs


def run_build(build_env: dict[str, Any]) -> dict[str, Any]:
    """`llmflow run build-images -f releases/tiny.yaml` in the source checkout."""
    root = build_env["tmp"] / ".llmflow"
    before = set((root / "runs").glob("*")) if (root / "runs").exists() else set()
    registry = build_env["registry"]
    result = subprocess.run(
        [
            *(LLMFLOW, "run", "build-images", "-f", "releases/tiny.yaml", "--root", str(root)),
            *("--set", f"registry={registry.host}/llmflow"),
            *("--set", f"torch-index={build_env['index'].url}"),
        ],
        capture_output=True,
        text=True,
        timeout=2000,
        cwd=build_env["repo"],
        env=build_env["env"],
    )
    [run_dir] = set((root / "runs").glob("*")) - before
    status = json.loads((run_dir / "status.json").read_text())
    nodes = {n["displayName"]: n for n in status["nodes"].values()}
    assert result.returncode == 0, result.stderr[-3000:]
    return {"status": status, "nodes": nodes}


def outputs(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in (node.get("outputs") or {}).get("parameters") or []}


def skopeo_digest(reference: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(out)["Digest"])


def test_build_push_skip_and_rebuild_only_what_changed(build_env: dict[str, Any]) -> None:
    first = run_build(build_env)
    plan = outputs(first["nodes"]["plan-images"])
    built = {b["name"] for b in json.loads(plan["builds"])}
    assert built == {"steps", "serving"}
    planned = json.loads(plan["planned"])
    images = json.loads(outputs(first["nodes"]["record-images"])["images"])
    assert set(images) == {"steps", "serving"}
    for name, reference in images.items():
        repository, digest = reference.split("@")
        assert repository == planned[name].rsplit(":", 1)[0]
        # What the registry holds under the content tag is what the pipeline outputs.
        assert skopeo_digest(planned[name]) == digest
    # The pushed image is the steps image: llmflow's code and torch, as a non-root user.
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{planned['steps']}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert config["config"]["User"] == "1000:1000"
    assert "PYTHONPATH=/app" in config["config"]["Env"]

    # A file no image copies: same content tags, nothing built.
    _commit_change(build_env["repo"], "README.md")
    second = run_build(build_env)
    assert json.loads(outputs(second["nodes"]["plan-images"])["builds"]) == []
    assert second["nodes"]["build"]["phase"] == "Skipped"
    assert json.loads(outputs(second["nodes"]["record-images"])["images"]) == images

    # A file only the steps image copies: the steps image alone is rebuilt, under a new tag.
    _commit_change(build_env["repo"], "steps/fetch.py")
    third = run_build(build_env)
    rebuilt = json.loads(outputs(third["nodes"]["plan-images"])["builds"])
    assert [b["name"] for b in rebuilt] == ["steps"]
    after = json.loads(outputs(third["nodes"]["record-images"])["images"])
    assert after["serving"] == images["serving"]
    assert after["steps"] != images["steps"]
    assert (
        skopeo_digest(json.loads(outputs(third["nodes"]["plan-images"])["planned"])["steps"])
        == (after["steps"].split("@")[1])
    )
