r"""Release tags: `release/<model>/<semver>` on a commit releases that model's spec as committed.

A tag names a model by its `model.name` (a Kubernetes name) and a version by semantic
versioning 2.0 (`1.2.0`, `1.2.0-rc.1`, `1.2.0+build.5`). Every way a tag reaches llmflow (a
GitHub Actions run, an Argo Events Sensor, a person) checks it here, so a malformed tag is
refused with the same words wherever it was pushed.

The regular expressions use only syntax that Go's RE2 (Argo Events' data filters) and Python's
`re` read alike: no `\d` (Unicode digits in Python), no lookarounds, and `$` only at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from workflows.exceptions import ReleaseTagError, SpecError

#: What every git tag ref starts with; webhooks carry it, `GITHUB_REF_NAME` does not.
REF_PREFIX = "refs/tags/"

#: The first component of every release tag.
TAG_PREFIX = "release/"

#: A Kubernetes name (DNS-1123 label), as `workflows.spec_base.dns_label` accepts it.
MODEL_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_BUILD_ID = r"[0-9a-zA-Z-]+"

#: Semantic versioning 2.0 (semver.org's grammar, written with `[0-9]`).
SEMVER_PATTERN = (
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?"
)

#: A release tag, bare (`release/tiny-llama/1.2.0`) or as a ref (`refs/tags/release/...`).
#: GitHub Actions cannot use it (its tag filters are globs: `release/*/*`), so what such a
#: glob lets through is checked again with `parse_release_tag`.
TAG_REGEX = rf"^(?:{REF_PREFIX})?{TAG_PREFIX}({MODEL_PATTERN})/({SEMVER_PATTERN})$"

_SEMVER = re.compile(SEMVER_PATTERN)
_EXAMPLE_MODEL = "tiny-llama"
_SHAPE = "release/<model>/<semver>"


@dataclass(frozen=True)
class ReleaseTag:
    """A parsed release tag.

    Attributes:
        model: The model's name, as the spec's `model.name` spells it (`tiny-llama`).
        version: The semantic version (`1.2.0`, `1.2.0-rc.1+build.5`).
        ref: The full git ref (`refs/tags/release/tiny-llama/1.2.0`).
    """

    model: str
    version: str
    ref: str

    @property
    def name(self) -> str:
        """The tag's short name, as `git tag` and `GITHUB_REF_NAME` show it."""
        return self.ref.removeprefix(REF_PREFIX)


def ref_regex(models: Iterable[str]) -> str:
    """A regex for the refs of release tags of these models only (`refs/tags/release/m/1.2.0`).

    What an Argo Events data filter on a push's `ref` matches: branches, other tags and other
    models' tags do not.

    Raises:
        ReleaseTagError: no models, or a model name that is not a Kubernetes name.
    """
    names = sorted(set(models))
    if not names:
        raise ReleaseTagError("no models to match release tags of: give at least one model name")
    for name in names:
        _check_model(name, f"model {name!r}")
    return rf"^{REF_PREFIX}{TAG_PREFIX}(?:{'|'.join(names)})/{SEMVER_PATTERN}$"


def parse_release_tag(tag: str) -> ReleaseTag:
    """Split `release/<model>/<semver>` (or `refs/tags/release/...`) into its parts.

    Raises:
        ReleaseTagError: the tag has another shape, a model that is not a Kubernetes name, or a
            version that is not a semantic version; the message names the part and the fix.
    """
    if tag.startswith("refs/") and not tag.startswith(REF_PREFIX):
        raise ReleaseTagError(
            f"tag {tag!r}: not a tag ref; expected {_SHAPE} or {REF_PREFIX}{_SHAPE}, "
            f"e.g. {TAG_PREFIX}{_EXAMPLE_MODEL}/1.2.0"
        )
    name = tag.removeprefix(REF_PREFIX)
    if not name.startswith(TAG_PREFIX):
        raise ReleaseTagError(
            f"tag {tag!r}: not a release tag; expected {_SHAPE}, "
            f"e.g. {TAG_PREFIX}{_EXAMPLE_MODEL}/1.2.0"
        )
    parts = name.split("/")
    if len(parts) != 3:
        raise ReleaseTagError(
            f"tag {tag!r}: expected {_SHAPE}, three parts separated by '/', "
            f"e.g. {TAG_PREFIX}{_EXAMPLE_MODEL}/1.2.0"
        )
    _, model, version = parts
    _check_model(model, f"tag {tag!r}: model {model!r}")
    if not _SEMVER.fullmatch(version):
        shape = "MAJOR.MINOR.PATCH"
        if version.startswith("v") and _SEMVER.fullmatch(version[1:]):
            shape, version_shown = f"{shape} without a 'v'", version[1:]
        else:
            version_shown = "1.2.0"
        raise ReleaseTagError(
            f"tag {tag!r}: {version!r} is not a semantic version ({shape}, "
            f"e.g. {TAG_PREFIX}{model}/{version_shown})"
        )
    return ReleaseTag(model=model, version=version, ref=f"{REF_PREFIX}{name}")


def spec_for_tag(tag: str | ReleaseTag, repo_root: Path) -> Path:
    """The release spec a tag releases: `releases/<model>.yaml` under `repo_root`.

    When no file is named after the model, the one spec whose `model.name` is the model is
    taken (`releases/tiny.yaml` releases `tiny-llama`), so a tag always names a model the way
    its spec and the cluster do.

    Args:
        tag: The tag, as `parse_release_tag` accepts it, or already parsed.
        repo_root: The checkout at that tag.

    Raises:
        ReleaseTagError: the tag is malformed.
        SpecError: no spec, or several, release the model, or the file named after it releases
            another model; the message lists the specs there are.
    """
    parsed = tag if isinstance(tag, ReleaseTag) else parse_release_tag(tag)
    releases = repo_root / "releases"
    named = releases / f"{parsed.model}.yaml"
    where = f"tag {parsed.name!r}"
    if named.is_file():
        found = _model_name(named)
        if found != parsed.model:
            raise SpecError(
                f"{where}: {_shown(named, repo_root)} releases model {found!r}, not "
                f"{parsed.model!r}; tag {TAG_PREFIX}{found}/{parsed.version}, or set its "
                f"model.name to {parsed.model!r}"
            )
        return named
    specs = {path: _model_name(path) for path in sorted(releases.glob("*.yaml"))}
    matches = [path for path, model in specs.items() if model == parsed.model]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SpecError(
            f"{where}: no {_shown(named, repo_root)}, and several specs release model "
            f"{parsed.model!r}: {', '.join(_shown(p, repo_root) for p in matches)}; rename the "
            f"one to release to {_shown(named, repo_root)}"
        )
    if not specs:
        raise SpecError(
            f"{where}: {_shown(releases, repo_root)}/ has no release specs; add "
            f"{_shown(named, repo_root)} (with model.name: {parsed.model})"
        )
    listed = ", ".join(
        f"{_shown(path, repo_root)} (model {model or '?'})" for path, model in specs.items()
    )
    raise SpecError(
        f"{where}: no release spec {_shown(named, repo_root)}, nor one whose model.name is "
        f"{parsed.model!r}; specs here: {listed}; tag one of their models, or add "
        f"{_shown(named, repo_root)}"
    )


def _check_model(model: str, what: str) -> None:
    # fullmatch, not dns_label's `$`: Python's `$` also matches before a trailing newline.
    if not re.fullmatch(MODEL_PATTERN, model):
        raise ReleaseTagError(
            f"{what} is not a Kubernetes name (lowercase letters, digits and '-', starting and "
            f"ending with a letter or digit, at most 63 characters), "
            f"e.g. {TAG_PREFIX}{_EXAMPLE_MODEL}/1.2.0"
        )


def _model_name(path: Path) -> str | None:
    """The spec's `model.name` as written, without validating the rest (submit does that)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read it as YAML: {exc}") from None
    model = data.get("model") if isinstance(data, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the checkout, as a person finds it there."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
