"""Git input artifacts: a repository cloned into a step's artifact path before the step starts.

Argo's init container loads a `git` input artifact with go-git (`ArtifactDriver.Load` in
workflow/artifacts/git/git.go); this module does the same steps in the same order with the git
CLI:

1. clone `repo` (`depth` commits deep; with `singleBranch`, only `branch`, which it then needs);
   an empty repository is an empty checkout and nothing more is done;
2. fetch the extra refspecs of `fetch` (as deep as `depth`);
3. with a `revision` (a branch, tag or commit): fetch every branch of the remote as a local
   branch (only `branch` with `singleBranch`), resolve the revision and check its commit out
   (a detached HEAD); without one, the remote's HEAD stays checked out;
4. unless `disableSubmodules`, update the submodules, initialising them, recursively.

The clone is made in a temporary folder beside the target and renamed onto it, as the executor
renames its download onto the artifact path: a target that exists and is not empty fails.

`repo` is handed to `git clone` as given, from the working directory of the process that runs
the engine: a URL, or a path, where a relative path resolves from that directory (`repo: .`
builds from what is committed in the checkout a local run starts in; uncommitted edits are not
in the clone). git runs as the user, with the user's own credentials (credential helpers, ssh
agent and keys, `~/.gitconfig`), so the artifact's `usernameSecret`, `passwordSecret`,
`sshPrivateKeySecret`, `insecureIgnoreHostKey` and `insecureSkipTLS` are accepted and ignored:
no Secret is read for them. git never prompts (`GIT_TERMINAL_PROMPT=0`, no terminal), so a
repository that needs credentials the user does not have fails rather than hangs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError

#: Tells the caller of a git process about it while it runs (the engine ends it on a stop).
Track = Callable[["subprocess.Popen[bytes]"], AbstractContextManager[Any]]

#: Variables that point git at some other repository (set inside git hooks); never inherited.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)

#: How much of git's own message a node message keeps.
_MESSAGE_LIMIT = 2048


def _untracked(proc: subprocess.Popen[bytes]) -> AbstractContextManager[Any]:
    return nullcontext()


@dataclass(frozen=True)
class GitSource:
    """What an artifact's `git` mapping says to check out (the fields that matter locally).

    Attributes:
        repo: A URL or a path, given to `git clone` as is.
        revision: A branch, tag or commit; empty for the remote's HEAD.
        depth: Commits to fetch from each tip; 0 for the whole history.
        fetch: Extra refspecs fetched after the clone (`refs/pull/1/head:refs/heads/pr`).
        single_branch: Clone only `branch`.
        branch: The branch of a single-branch clone.
        disable_submodules: Leave submodules uninitialised.
    """

    repo: str
    revision: str = ""
    depth: int = 0
    fetch: tuple[str, ...] = ()
    single_branch: bool = False
    branch: str = ""
    disable_submodules: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> GitSource:
        """Read a resolved `git` mapping.

        Args:
            spec: The artifact's `git` mapping, its parameters substituted.
            where: The field's path for messages (`inputs.artifacts.src.git`).

        Raises:
            RunError: a field has a value Argo would refuse, naming it and the fix.
        """
        repo = str(spec.get("repo") or "")
        if not repo:
            raise RunError(f"{where}.repo is required: the URL or path of the repository")
        depth = spec.get("depth") or 0
        if isinstance(depth, str) and depth.isdigit():
            depth = int(depth)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise RunError(
                f"{where}.depth = {depth!r} is not a whole number of commits; give 1 or more "
                "for a shallow clone, or leave it out for the whole history"
            )
        fetch = spec.get("fetch") or []
        if not isinstance(fetch, list):
            raise RunError(f"{where}.fetch = {fetch!r} is not a list of refspecs")
        return cls(
            repo=repo,
            revision=str(spec.get("revision") or ""),
            depth=depth,
            fetch=tuple(str(f) for f in fetch),
            single_branch=_flag(spec.get("singleBranch")),
            branch=str(spec.get("branch") or ""),
            disable_submodules=_flag(spec.get("disableSubmodules")),
        )


def _flag(value: Any) -> bool:
    """A boolean field, also as the string a substituted `{{...}}` leaves."""
    return value is True or str(value).lower() == "true"


def load_git_inputs(
    declared: Sequence[Mapping[str, Any]],
    supplied: Mapping[str, str],
    local: Callable[[str], Path],
    env: Mapping[str, str],
    track: Track = _untracked,
) -> None:
    """Clone a pod's git input artifacts that no argument replaced, as Argo's init container.

    An argument for an input artifact replaces the template's own location (ProcessArgs in
    workflow/common/util.go), so those are staged from the argument instead. A failure is the
    init container's: the node is an Error (assessNodeStatus in workflow/controller/operator.go),
    its message the executor's after `init: Error (exit code 1): `.

    Args:
        declared: The template's resolved `inputs.artifacts`.
        supplied: Input artifacts given by arguments, by name.
        local: Where a container path lives on this machine (the node's `PathMapper.local`).
        env: The environment git runs with.
        track: Wraps each git process while it runs.

    Raises:
        RunError: a clone failed.
    """
    for artifact in declared:
        if not artifact.get("git") or artifact["name"] in supplied:
            continue
        try:
            load_git_artifact(
                artifact["name"], artifact["git"], local(artifact["path"]), env, track
            )
        except RunError as exc:
            raise RunError(f"init: Error (exit code 1): {exc}") from None


def load_git_artifact(
    name: str,
    spec: Mapping[str, Any],
    target: Path,
    env: Mapping[str, str],
    track: Track = _untracked,
) -> None:
    """Clone a git input artifact into `target`, where the container path maps locally.

    Args:
        name: The artifact's name, for messages.
        spec: Its resolved `git` mapping.
        target: The local folder of the artifact's `path`; its parent is created.
        env: The environment git runs with (the run's: the user's credentials and config).
        track: Wraps each git process while it runs (the run's `tracking`, so a stop ends it).

    Raises:
        RunError: the load failed, as `artifact <name> failed to load: ...`, naming the
            repository, the revision and git's own message.
    """
    source = GitSource.from_spec(spec, f"inputs.artifacts.{name}.git")
    loader = _Loader(name, source, env, track)
    if source.single_branch and not source.branch:
        raise loader.failure("single branch mode without a branch specified", "set `branch`")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        loader.load(temporary)
        try:
            os.replace(temporary, target)
        except OSError as exc:
            raise loader.failure(f"failed to move the clone to {target}", str(exc)) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


class _Loader:
    """Runs the git commands of one load and words their failures."""

    def __init__(self, name: str, source: GitSource, env: Mapping[str, str], track: Track) -> None:
        self.name = name
        self.source = source
        self.env = {k: v for k, v in env.items() if k not in _REPO_ENV}
        self.env["GIT_TERMINAL_PROMPT"] = "0"
        self.track = track

    def load(self, path: Path) -> None:
        """Argo's steps (see the module docstring) into an existing empty folder."""
        s = self.source
        clone = ["clone", "--quiet"]
        if s.depth:
            # git ignores a depth for a local path unless told to use its transport, and a
            # shallow clone is single-branch unless told not to; go-git does neither.
            clone += ["--depth", str(s.depth), "--no-local"]
            if not s.single_branch:
                clone.append("--no-single-branch")
        if s.single_branch:
            clone += ["--single-branch", "--branch", s.branch]
        self.git([*clone, "--", s.repo, str(path)], Path.cwd(), "failed to clone")
        if not self.git(["rev-list", "-n", "1", "--all"], path, "failed to read the clone"):
            return  # an empty repository: Argo initialises it and stops there
        deepen = ["--depth", str(s.depth)] if s.depth else []
        if s.fetch:
            self.fetch([*deepen, *s.fetch], path, f"failed to fetch {list(s.fetch)}")
        if s.revision:
            heads = f"refs/heads/{s.branch}" if s.single_branch else "refs/heads/*"
            self.fetch([f"{heads}:{heads}"], path, "failed to fetch the branches")
            commit = self.git(
                ["rev-parse", "--verify", "--end-of-options", f"{s.revision}^{{commit}}"],
                path,
                "failed to resolve revision",
            )
            self.git(["checkout", "--quiet", "--detach", commit], path, "failed to checkout")
        if not s.disable_submodules:
            self.git(
                ["submodule", "update", "--init", "--recursive", "--quiet"],
                path,
                "failed to update submodules",
            )

    def fetch(self, args: Sequence[str], path: Path, what: str) -> None:
        """Fetch from origin, also into the branch checked out (as go-git's fetch may)."""
        self.git(["fetch", "--quiet", "--update-head-ok", "origin", *args], path, what)

    def git(self, args: Sequence[str], cwd: Path, what: str) -> str:
        """Run one git command; its stdout, stripped.

        Raises:
            RunError: git is missing or the command failed (`what` says which step).
        """
        command = ["git", "-c", "advice.detachedHead=false", *args]
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # no terminal to prompt on; a stop ends its group
            )
        except FileNotFoundError:
            raise self.failure(
                "git is not installed", "install git (`apt-get install git`) and put it on PATH"
            ) from None
        with self.track(proc):
            out, err = proc.communicate()
        if proc.returncode != 0:
            said = (err or out).decode("utf-8", "replace").strip()
            raise self.failure(what, said[-_MESSAGE_LIMIT:] or f"git exit code {proc.returncode}")
        return out.decode("utf-8", "replace").strip()

    def failure(self, what: str, detail: str) -> RunError:
        """Argo's `artifact <name> failed to load: ...`, naming repository and revision."""
        s = self.source
        revision = f'revision "{s.revision}"' if s.revision else "the remote HEAD"
        return RunError(
            _redact(
                f'artifact {self.name} failed to load: {what} (repo "{s.repo}", {revision}): '
                f"{detail}"
            )
        )


def _redact(text: str) -> str:
    """Hide a password written into a URL (`https://user:token@host/...`)."""
    return re.sub(r"(\w+://[^/\s:@]+):[^/\s@]+@", r"\1:***@", text)
