"""Git input artifacts and Secret volumes in the local engine.

Each test builds a real repository (or a Secret in the local platform) under tmp_path, runs a
small Hera workflow from its YAML, and asserts what the step saw and the phases Argo gives.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hera.workflows import (
    DAG,
    Artifact,
    Container,
    GitArtifact,
    Parameter,
    Resource,
    SecretVolume,
    Steps,
    Workflow,
)
from hera.workflows.models import KeyToPath, ValueFrom, VolumeMount
from hera.workflows.models import SecretVolumeSource as SecretSource
from hera.workflows.models import Volume as ModelVolume

from tests.engine_helpers import IMAGE, by_name, execute, outputs
from workflows.exceptions import UnsupportedFeature
from workflows.local.engine import Run
from workflows.local.platform import LocalPlatform
from workflows.local.support import check_supported

#: Reads the checkout's VERSION and its commit count into output parameters.
READ = (
    "import pathlib, subprocess\n"
    "out = pathlib.Path('/tmp/out'); out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'version').write_text(pathlib.Path('/src/VERSION').read_text())\n"
    "count = subprocess.run(['git', '-C', '/src', 'rev-list', '--count', 'HEAD'],\n"
    "                       capture_output=True, text=True, check=True).stdout\n"
    "(out / 'commits').write_text(count)\n"
)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _commit(repo: Path, content: str) -> str:
    (repo / "VERSION").write_text(content)
    _git(repo, "add", "VERSION")
    _git(repo, "commit", "-q", "-m", content)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Any]:
    """`src`: `one` (tagged v1), then `two` on main; `three` on branch feature."""
    src = tmp_path / "src"
    src.mkdir()
    _git(src, "init", "-q", "-b", "main")
    first = _commit(src, "one")
    _git(src, "tag", "v1")
    _git(src, "checkout", "-q", "-b", "feature")
    _commit(src, "three")
    _git(src, "checkout", "-q", "main")
    last = _commit(src, "two")
    bare = tmp_path / "src.git"
    _git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))
    return {"path": src, "bare": bare, "first": first, "last": last}


def _reader(git: dict[str, Any], name: str = "git") -> Workflow:
    with Workflow(name=name, entrypoint="read") as w:
        Container(
            name="read",
            image=IMAGE,
            command=["python", "-c", READ],
            inputs=[GitArtifact(name="src", path="/src", **git)],
            outputs=[
                Parameter(name=o, value_from=ValueFrom(path=f"/tmp/out/{o}"))
                for o in ("version", "commits")
            ],
        )
    return w


def _read(run: Run) -> dict[str, str]:
    node = by_name(run)[run.name]
    assert node.phase == "Succeeded", node.message
    return outputs(node)


def test_the_remote_head_is_checked_out_without_a_revision(
    tmp_path: Path, repo: dict[str, Any]
) -> None:
    run = execute(_reader({"repo": str(repo["path"])}), tmp_path / "root")
    assert run.phase == "Succeeded", run.message
    assert _read(run) == {"version": "two", "commits": "2"}
    clone = tmp_path / "root" / "runs" / "git" / "nodes" / run.name / "fs" / "src"
    assert _git(clone, "rev-parse", "HEAD") == repo["last"]


@pytest.mark.parametrize(
    ("revision", "source", "version"),
    [
        ("v1", "bare", "one"),
        ("first", "path", "one"),
        ("first-short", "bare", "one"),
        ("feature", "bare", "three"),
    ],
)
def test_a_revision_checks_out_a_tag_commit_or_branch(
    tmp_path: Path, repo: dict[str, Any], revision: str, source: str, version: str
) -> None:
    given = {"first": repo["first"], "first-short": repo["first"][:8]}.get(revision, revision)
    run = execute(_reader({"repo": str(repo[source]), "revision": given}), tmp_path)
    assert run.phase == "Succeeded", run.message
    assert _read(run)["version"] == version


def test_an_unknown_revision_is_an_error_of_the_node(tmp_path: Path, repo: dict[str, Any]) -> None:
    run = execute(_reader({"repo": str(repo["bare"]), "revision": "no-such-tag"}), tmp_path)
    node = by_name(run)["git"]
    assert node.phase == "Error"
    assert run.phase == "Error"
    assert node.message.startswith("init: Error (exit code 1): artifact src failed to load: ")
    assert '"no-such-tag"' in node.message
    assert str(repo["bare"]) in node.message
    assert "Needed a single revision" in node.message  # git's own words
    assert "exitCode" not in node.outputs  # the step never started


def test_a_repository_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    run = execute(_reader({"repo": str(missing), "revision": "v2"}), tmp_path / "root")
    node = by_name(run)["git"]
    assert node.phase == "Error"
    assert "failed to clone" in node.message and str(missing) in node.message
    assert '"v2"' in node.message and "does not exist" in node.message


def test_depth_makes_a_shallow_clone(tmp_path: Path, repo: dict[str, Any]) -> None:
    run = execute(_reader({"repo": str(repo["path"]), "depth": 1}), tmp_path)
    assert run.phase == "Succeeded", run.message
    assert _read(run) == {"version": "two", "commits": "1"}


def test_a_relative_repo_resolves_from_the_working_directory(
    tmp_path: Path, repo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = execute(_reader({"repo": "src.git", "revision": "v1"}), tmp_path / "root")
    assert run.phase == "Succeeded", run.message
    assert _read(run)["version"] == "one"


def test_single_branch_clones_only_that_branch(tmp_path: Path, repo: dict[str, Any]) -> None:
    git = {"repo": str(repo["bare"]), "single_branch": True, "branch": "feature"}
    run = execute(_reader(git), tmp_path / "a")
    assert _read(run)["version"] == "three"
    clone = tmp_path / "a" / "runs" / "git" / "nodes" / run.name / "fs" / "src"
    assert _git(clone, "branch", "-r", "--format=%(refname:short)").split() == ["origin/feature"]
    run = execute(_reader({"repo": str(repo["bare"]), "single_branch": True}), tmp_path / "b")
    assert by_name(run)["git"].phase == "Error"
    assert "single branch mode without a branch specified" in by_name(run)["git"].message


def test_fetch_gets_refs_that_are_not_branches(tmp_path: Path, repo: dict[str, Any]) -> None:
    src = repo["path"]
    _git(src, "checkout", "-q", "-b", "pr")
    head = _commit(src, "pull request")
    _git(src, "update-ref", "refs/pull/1/head", head)
    _git(src, "checkout", "-q", "main")
    _git(src, "branch", "-q", "-D", "pr")  # reachable only from refs/pull/1/head now
    url = f"file://{src}"  # over git's transport, so only what is fetched is there
    without = execute(_reader({"repo": url, "revision": head}), tmp_path / "a")
    assert by_name(without)["git"].phase == "Error"
    git = {"repo": url, "revision": "pr-1", "fetch": ["refs/pull/1/head:refs/heads/pr-1"]}
    run = execute(_reader(git), tmp_path / "b")
    assert _read(run)["version"] == "pull request"


def test_submodules_are_updated_unless_disabled(tmp_path: Path, repo: dict[str, Any]) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    _git(lib, "init", "-q", "-b", "main")
    (lib / "LIB").write_text("lib")
    _git(lib, "add", "LIB")
    _git(lib, "commit", "-q", "-m", "lib")
    src = repo["path"]
    _git(src, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(lib), "lib")
    _git(src, "commit", "-q", "-m", "add lib")
    # git refuses local submodules unless allowed (CVE-2022-39253): allowed for this run only.
    env = {
        **os.environ,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "protocol.file.allow",
        "GIT_CONFIG_VALUE_0": "always",
    }
    seen = {}
    for disable in (False, True):
        root = tmp_path / f"root-{disable}"
        run = execute(_reader({"repo": str(src), "disable_submodules": disable}), root, env=env)
        assert run.phase == "Succeeded", run.message
        clone = root / "runs" / "git" / "nodes" / run.name / "fs" / "src"
        seen[disable] = (clone / "lib" / "LIB").is_file()
    assert seen == {False: True, True: False}


def test_an_argument_replaces_the_git_artifact(tmp_path: Path, repo: dict[str, Any]) -> None:
    write = (
        "import pathlib; p = pathlib.Path('/tmp/made'); p.mkdir(parents=True, exist_ok=True); "
        "(p / 'VERSION').write_text('made'); (p / '.git').mkdir()"
    )
    with Workflow(name="replaced", entrypoint="main") as w:
        make = Container(
            name="make",
            image=IMAGE,
            command=["python", "-c", write],
            outputs=[Artifact(name="tree", path="/tmp/made")],
        )
        read = Container(
            name="read",
            image=IMAGE,
            command=["python", "-c", "print(open('/src/VERSION').read())"],
            inputs=[GitArtifact(name="src", path="/src", repo=str(repo["path"]))],
        )
        with DAG(name="main"):
            made = make(name="make")
            made >> read(name="given", arguments={"src": made.get_artifact("tree")})
            read(name="cloned")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded", run.message
    assert nodes["given"].outputs["result"] == "made"
    assert nodes["cloned"].outputs["result"] == "two"


def test_git_artifacts_load_only_into_pods(repo: dict[str, Any]) -> None:
    with Workflow(name="outer", entrypoint="main") as w:
        leaf = Container(name="leaf", image=IMAGE, command=["true"])
        with Steps(name="main", inputs=[GitArtifact(name="src", repo=str(repo["path"]))]):
            leaf(name="leaf")
    with pytest.raises(UnsupportedFeature, match=r"inputs\.artifacts\[0\]\.git: git artifacts"):
        check_supported(w.to_dict())
    manifest = _reader({"repo": str(repo["path"])}).to_dict()
    manifest["spec"]["templates"][0]["inputs"]["artifacts"][0]["git"]["repo"] = ""
    with pytest.raises(UnsupportedFeature, match=r"git\.repo is required"):
        check_supported(manifest)


# --- Secret volumes ---------------------------------------------------------------------------

#: Lists the mounted folder: each file's path relative to it, its content and its mode.
LIST = (
    "import json, os, pathlib\n"
    "root = pathlib.Path('/etc/creds')\n"
    "print(json.dumps({str(p.relative_to(root)): [p.read_text(), oct(p.stat().st_mode & 0o777)]\n"
    "                  for p in sorted(root.rglob('*')) if p.is_file()}))\n"
)


def _secret(root: Path, name: str, data: dict[str, str], namespace: str = "default") -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    LocalPlatform(root, namespace).act("create", {**manifest, "stringData": data})


def _lister(volume: SecretVolume | None = None, name: str = "secrets") -> Workflow:
    """A step listing /etc/creds: a template volume if given, else the workflow's `creds`."""
    with Workflow(
        name=name,
        entrypoint="list",
        volumes=None
        if volume
        else [ModelVolume(name="creds", secret=SecretSource(secret_name="creds"))],
    ) as w:
        Container(
            name="list",
            image=IMAGE,
            command=["python", "-c", LIST],
            volumes=[volume] if volume else None,
            volume_mounts=None if volume else [VolumeMount(name="creds", mount_path="/etc/creds")],
        )
    return w


def test_a_secret_volume_holds_one_file_per_key(tmp_path: Path) -> None:
    _secret(tmp_path, "creds", {"TOKEN": "s3cr3t", "USER": "me"})
    run = execute(_lister(), tmp_path)
    assert run.phase == "Succeeded", run.message
    seen = json.loads(by_name(run)[run.name].outputs["result"])
    assert seen == {"TOKEN": ["s3cr3t", "0o600"], "USER": ["me", "0o600"]}


def test_items_pick_keys_paths_and_modes(tmp_path: Path) -> None:
    _secret(tmp_path, "creds", {"TOKEN": "s3cr3t", "USER": "me"})
    volume = SecretVolume(
        name="mine",
        secret_name="creds",
        mount_path="/etc/creds",
        default_mode=0o440,
        items=[
            KeyToPath(key="TOKEN", path="api/token"),
            KeyToPath(key="USER", path="u", mode=0o400),
        ],
    )
    run = execute(_lister(volume), tmp_path)
    assert run.phase == "Succeeded", run.message
    seen = json.loads(by_name(run)[run.name].outputs["result"])
    assert seen == {"api/token": ["s3cr3t", "0o440"], "u": ["me", "0o400"]}


def test_a_secret_made_by_an_earlier_step_is_mounted(tmp_path: Path) -> None:
    manifest = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {KEY: v1}\n"
    with Workflow(
        name="made",
        entrypoint="main",
        namespace="team",
        volumes=[ModelVolume(name="creds", secret=SecretSource(secret_name="creds"))],
    ) as w:
        make = Resource(name="make", action="create", manifest=manifest)
        use = Container(
            name="use",
            image=IMAGE,
            command=["python", "-c", LIST],
            volume_mounts=[VolumeMount(name="creds", mount_path="/etc/creds")],
        )
        with Steps(name="main"):
            make(name="make")
            use(name="use")
    run = execute(w, tmp_path)
    assert run.phase == "Succeeded", run.message
    assert json.loads(by_name(run)["use"].outputs["result"]) == {"KEY": ["v1", "0o600"]}


def test_an_optional_missing_secret_is_an_empty_folder(tmp_path: Path) -> None:
    code = "import os; print(sorted(os.listdir('/etc/creds')))"
    volume = SecretVolume(name="mine", secret_name="absent", optional=True, mount_path="/etc/creds")
    with Workflow(name="optional", entrypoint="list") as w:
        Container(name="list", image=IMAGE, command=["python", "-c", code], volumes=[volume])
    run = execute(w, tmp_path)
    assert run.phase == "Succeeded", run.message
    assert by_name(run)[run.name].outputs["result"] == "[]"


def test_a_missing_secret_fails_the_step_before_it_runs(tmp_path: Path) -> None:
    run = execute(_lister(name="missing"), tmp_path)
    node = by_name(run)[run.name]
    assert node.phase == "Error" and run.phase == "Error"
    assert "volume 'creds' needs Secret 'creds' in namespace 'default'" in node.message
    assert "resource template" in node.message and "optional: true" in node.message
    assert "exitCode" not in node.outputs  # never started
    assert not (tmp_path / "runs" / "missing" / "nodes" / run.name / "main.log").exists()


def test_a_missing_key_of_items_names_the_key_not_the_values(tmp_path: Path) -> None:
    _secret(tmp_path, "creds", {"TOKEN": "s3cr3t"})
    volume = SecretVolume(
        name="mine",
        secret_name="creds",
        mount_path="/etc/creds",
        items=[KeyToPath(key="NOPE", path="x")],
    )
    run = execute(_lister(volume), tmp_path)
    node = by_name(run)[run.name]
    assert node.phase == "Error"
    assert "'NOPE'" in node.message and "TOKEN" in node.message
    assert "s3cr3t" not in node.message


def test_secret_volumes_are_accepted_only_in_their_shape() -> None:
    manifest = _lister().to_dict()
    manifest["spec"]["volumes"][0]["secret"]["unknownField"] = 1
    with pytest.raises(UnsupportedFeature, match=r"spec\.volumes\[0\]\.secret\.unknownField"):
        check_supported(manifest)
