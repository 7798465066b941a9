"""Git repositories laid out as the Hugging Face Hub keeps them, for the Hub stand-in.

`publish` commits files to `<root>/<org>/<name>`, LFS files as git-lfs pointers with their
bytes in `.git/lfs/objects/` (as git-lfs leaves them); `HubRepo` reads a commit back the way
the Hub describes it: paths, git blob ids, sizes, and the SHA-256 and size of LFS files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "llmflow tests",
    "GIT_AUTHOR_EMAIL": "tests@llmflow.invalid",
    "GIT_COMMITTER_NAME": "llmflow tests",
    "GIT_COMMITTER_EMAIL": "tests@llmflow.invalid",
}
_POINTER = re.compile(
    rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
    rb"size (\d+)\n$"
)
_ACCESS_FILE = "hub-access.json"


def git(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    """Run git in `repo` with a fixed identity and no user or system config."""
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        input=data,
        capture_output=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file committed in place of `data`."""
    oid = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
    )


def lfs_object(repo: Path, sha256: str) -> Path:
    """Where git-lfs keeps an object's bytes in a repository."""
    return repo / ".git" / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256


def publish(
    root: Path,
    repo_id: str,
    files: dict[str, bytes],
    *,
    lfs: Callable[[str, bytes], bool] = lambda path, data: path.endswith(".safetensors"),
    remove: tuple[str, ...] = (),
    tag: str = "",
    message: str = "upload",
) -> str:
    """Commit `files` to the repository `root/repo_id` on branch main; returns the commit sha.

    Files for which `lfs(path, data)` holds are committed as LFS pointers with the bytes in
    the LFS object store, as the Hub stores `*.safetensors` and large files.
    """
    repo = root / repo_id
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
    for rel in remove:
        git(repo, "rm", "-q", "--", rel)
    for rel, data in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if lfs(rel, data):
            obj = lfs_object(repo, hashlib.sha256(data).hexdigest())
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            path.write_bytes(lfs_pointer(data))
        else:
            path.write_bytes(data)
        git(repo, "add", "--", rel)
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    if tag:
        git(repo, "tag", "-f", tag)
    return git(repo, "rev-parse", "HEAD").decode().strip()


def set_access(
    root: Path, repo_id: str, *, private: bool = False, gated: bool = False, granted: tuple = ()
) -> None:
    """Make a repository private (only `granted` users see it) and/or gated (only they read it)."""
    access = {"private": private, "gated": gated, "granted": list(granted)}
    (root / repo_id / ".git" / _ACCESS_FILE).write_text(json.dumps(access))


@dataclass(frozen=True)
class Entry:
    """A file of a commit as the Hub describes it."""

    path: str
    oid: str  # the git blob id (of the pointer, for LFS files)
    blob_size: int
    lfs_sha256: str = ""
    lfs_size: int = 0

    @property
    def size(self) -> int:
        return self.lfs_size if self.lfs_sha256 else self.blob_size


class HubRepo:
    """A git repository read the way the Hub presents it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def access(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / ".git" / _ACCESS_FILE).read_text())
        except FileNotFoundError:
            return {"private": False, "gated": False, "granted": []}

    def resolve(self, revision: str) -> str | None:
        """The commit sha of a branch, tag or (full) sha, or None."""
        names = [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        if revision.startswith("refs/") or re.fullmatch(r"[0-9a-f]{40}", revision):
            names.append(revision)  # the Hub takes full shas only, never abbreviated ones
        for name in names:
            try:
                out = git(self.path, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
            except subprocess.CalledProcessError:
                continue
            return out.decode().strip()
        return None

    def entries(self, commit: str) -> list[Entry]:
        """Every file of a commit, LFS pointers read."""
        out = git(self.path, "ls-tree", "-r", "-l", "-z", commit).decode()
        entries = []
        for line in filter(None, out.split("\0")):
            meta, path = line.split("\t", 1)
            _, kind, oid, size = meta.split()
            if kind != "blob":
                continue
            entry = Entry(path, oid, int(size))
            if entry.blob_size < 200:
                match = _POINTER.match(self.blob(oid))
                if match:
                    entry = Entry(path, oid, int(size), match[1].decode(), int(match[2]))
            entries.append(entry)
        return entries

    def blob(self, oid: str) -> bytes:
        return git(self.path, "cat-file", "blob", oid)
