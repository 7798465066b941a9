"""Git-tag releases: tag parsing, the spec a tag releases, the Argo Events objects that submit the
`release` template for a pushed tag (strictly valid, and doing the right thing with real webhook
payloads, run through a recording of Argo Events' filters and parameters), and the GitHub
Actions workflow that does the same from CI.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from tests import sensor_params as sp
from workflows.exceptions import SpecError, TriggerError
from workflows.spec import ReleaseSpec, load_spec, parse_spec
from workflows.tags import (
    TAG_REGEX,
    ReleaseTag,
    ReleaseTagError,
    parse_release_tag,
    ref_regex,
    spec_for_tag,
)
from workflows.tags_cli import release_tag_group
from workflows.triggers import render_triggers, sensor
from workflows.validation import SchemaRegistry, validate_documents
from workflows.webhooks import (
    API_VERSION,
    NAME,
    GitHubHook,
    GitLabHook,
    Hooks,
    event_source,
    repo_location,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SCHEMAS = ROOT.parent / "shared" / "schemas"
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "release.yaml"
K8S_VERSION = "1.33"

GITHUB_REPO = "https://github.com/my-org/llmflow.git"
HOOK_URL = "https://hooks.example.com"
TAG = "release/tiny-llama/1.2.0"
COMMIT = "9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f708192"  # the commit both fixtures' tag points to


# --- tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "model", "version"),
    [
        ("release/tiny-llama/1.2.0", "tiny-llama", "1.2.0"),
        ("refs/tags/release/tiny-llama/1.2.0", "tiny-llama", "1.2.0"),
        ("release/m/0.0.0", "m", "0.0.0"),
        ("release/tiny-llama/1.2.0-rc.1", "tiny-llama", "1.2.0-rc.1"),
        ("release/tiny-llama/1.2.0-0.3.7", "tiny-llama", "1.2.0-0.3.7"),
        ("release/tiny-llama/1.2.0-x-y.7.z.92", "tiny-llama", "1.2.0-x-y.7.z.92"),
        (
            "release/tiny-llama/1.2.0+20241128.sha-9b2c4d6",
            "tiny-llama",
            "1.2.0+20241128.sha-9b2c4d6",
        ),
        (
            "release/tiny-llama/10.20.30-beta.11+exp.sha.5114f85",
            "tiny-llama",
            "10.20.30-beta.11+exp.sha.5114f85",
        ),
    ],
)
def test_release_tags_parse(tag: str, model: str, version: str) -> None:
    parsed = parse_release_tag(tag)
    name = tag.removeprefix("refs/tags/")
    assert parsed == ReleaseTag(model=model, version=version, ref=f"refs/tags/{name}")
    assert parsed.name == name
    assert re.fullmatch(TAG_REGEX, tag)
    assert sp.go_regex(TAG_REGEX).search(tag)  # the same regex, read as Go's RE2 reads it


SHAPE = "e.g. release/tiny-llama/1.2.0"
K8S_NAME = (
    "is not a Kubernetes name (lowercase letters, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters)"
)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (
            "release/tiny-llama/1.2",
            "tag 'release/tiny-llama/1.2': '1.2' is not a semantic version (MAJOR.MINOR.PATCH, "
            "e.g. release/tiny-llama/1.2.0)",
        ),
        (
            "release/tiny-llama/latest",
            "tag 'release/tiny-llama/latest': 'latest' is not a semantic version "
            "(MAJOR.MINOR.PATCH, e.g. release/tiny-llama/1.2.0)",
        ),
        (
            "release/tiny-llama/v1.2.0",
            "tag 'release/tiny-llama/v1.2.0': 'v1.2.0' is not a semantic version "
            "(MAJOR.MINOR.PATCH without a 'v', e.g. release/tiny-llama/1.2.0)",
        ),
        (
            "release/tiny-llama/01.2.0",
            "tag 'release/tiny-llama/01.2.0': '01.2.0' is not a semantic version "
            "(MAJOR.MINOR.PATCH, e.g. release/tiny-llama/1.2.0)",
        ),
        (
            "release/tiny-llama/1.2.0-rc..1",
            "tag 'release/tiny-llama/1.2.0-rc..1': '1.2.0-rc..1' is not a semantic version "
            "(MAJOR.MINOR.PATCH, e.g. release/tiny-llama/1.2.0)",
        ),
        (
            "release/tiny-llama/1.2.0\n",
            "tag 'release/tiny-llama/1.2.0\\n': '1.2.0\\n' is not a semantic version "
            "(MAJOR.MINOR.PATCH, e.g. release/tiny-llama/1.2.0)",
        ),
        ("release/Tiny/1.2.0", f"tag 'release/Tiny/1.2.0': model 'Tiny' {K8S_NAME}, {SHAPE}"),
        ("release/tiny-/1.2.0", f"tag 'release/tiny-/1.2.0': model 'tiny-' {K8S_NAME}, {SHAPE}"),
        (
            "v1.2.0",
            f"tag 'v1.2.0': not a release tag; expected release/<model>/<semver>, {SHAPE}",
        ),
        (
            "release/tiny-llama",
            "tag 'release/tiny-llama': expected release/<model>/<semver>, three parts separated "
            f"by '/', {SHAPE}",
        ),
        (
            "release/tiny-llama/1.2.0/extra",
            "tag 'release/tiny-llama/1.2.0/extra': expected release/<model>/<semver>, three "
            f"parts separated by '/', {SHAPE}",
        ),
        (
            "refs/heads/release/tiny-llama/1.2.0",
            "tag 'refs/heads/release/tiny-llama/1.2.0': not a tag ref; expected "
            f"release/<model>/<semver> or refs/tags/release/<model>/<semver>, {SHAPE}",
        ),
    ],
)
def test_malformed_tags_are_refused_with_the_reason(tag: str, message: str) -> None:
    with pytest.raises(ReleaseTagError) as caught:
        parse_release_tag(tag)
    assert str(caught.value) == message
    assert not re.fullmatch(TAG_REGEX, tag)
    assert not sp.go_regex(TAG_REGEX).search(tag)


def test_ref_regex_matches_only_the_models_release_tag_refs() -> None:
    regex = sp.go_regex(ref_regex(["tiny-llama", "big"]))
    assert regex.search("refs/tags/release/tiny-llama/1.2.0")
    assert regex.search("refs/tags/release/big/2.0.0-rc.1+b.7")
    assert not regex.search("refs/tags/release/other/1.2.0")
    assert not regex.search("refs/tags/release/tiny-llama-2/1.2.0")
    assert not regex.search("refs/heads/release/tiny-llama/1.2.0")
    assert not regex.search("release/tiny-llama/1.2.0")
    assert not regex.search("refs/tags/release/tiny-llama/1.2.0\n")
    with pytest.raises(ReleaseTagError, match="no models"):
        ref_regex([])


# --- the spec a tag releases ------------------------------------------------------------------


def _repo(tmp_path: Path, specs: dict[str, str]) -> Path:
    (tmp_path / "releases").mkdir(parents=True)
    for name, model in specs.items():
        (tmp_path / "releases" / name).write_text(yaml.safe_dump({"model": {"name": model}}))
    return tmp_path


def test_the_repos_tiny_release_is_found_by_its_model_name() -> None:
    assert spec_for_tag(TAG, ROOT) == ROOT / "releases" / "tiny.yaml"
    assert load_spec(spec_for_tag(TAG, ROOT)).model.name == "tiny-llama"


def test_a_spec_named_after_the_model_wins(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"tiny-llama.yaml": "tiny-llama", "old.yaml": "tiny-llama"})
    assert spec_for_tag(parse_release_tag(TAG), root) == root / "releases" / "tiny-llama.yaml"
    assert spec_for_tag(TAG, Path(".")) == Path("releases/tiny.yaml")  # as CI prints it


def test_a_spec_named_after_the_model_must_release_it(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"tiny-llama.yaml": "tiny"})
    with pytest.raises(SpecError) as caught:
        spec_for_tag(TAG, root)
    assert str(caught.value) == (
        "tag 'release/tiny-llama/1.2.0': releases/tiny-llama.yaml releases model 'tiny', not "
        "'tiny-llama'; tag release/tiny/1.2.0, or set its model.name to 'tiny-llama'"
    )


def test_a_missing_spec_names_the_file_and_the_specs_there_are(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"tiny.yaml": "tiny-llama", "big.yaml": "big-llama"})
    with pytest.raises(SpecError) as caught:
        spec_for_tag("refs/tags/release/mistral/0.1.0", root)
    assert str(caught.value) == (
        "tag 'release/mistral/0.1.0': no release spec releases/mistral.yaml, nor one whose "
        "model.name is 'mistral'; specs here: releases/big.yaml (model big-llama), "
        "releases/tiny.yaml (model tiny-llama); tag one of their models, or add "
        "releases/mistral.yaml"
    )
    empty = _repo(tmp_path / "empty", {})
    with pytest.raises(SpecError) as caught:
        spec_for_tag(TAG, empty)
    assert str(caught.value) == (
        "tag 'release/tiny-llama/1.2.0': releases/ has no release specs; add "
        "releases/tiny-llama.yaml (with model.name: tiny-llama)"
    )


def test_two_specs_of_one_model_are_ambiguous(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"a.yaml": "tiny-llama", "b.yaml": "tiny-llama"})
    with pytest.raises(SpecError) as caught:
        spec_for_tag(TAG, root)
    assert str(caught.value) == (
        "tag 'release/tiny-llama/1.2.0': no releases/tiny-llama.yaml, and several specs release "
        "model 'tiny-llama': releases/a.yaml, releases/b.yaml; rename the one to release to "
        "releases/tiny-llama.yaml"
    )


def test_release_tag_check_prints_the_spec_or_the_reason() -> None:
    runner = CliRunner()
    ok = runner.invoke(release_tag_group, ["check", TAG, "--repo-root", str(ROOT)])
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"{ROOT / 'releases' / 'tiny.yaml'}\n"

    bad = runner.invoke(release_tag_group, ["check", "release/tiny-llama/latest"])
    assert bad.exit_code == 2
    assert "'latest' is not a semantic version" in bad.output
    assert "Traceback" not in bad.output


# --- rendering --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> ReleaseSpec:
    return load_spec(ROOT / "releases" / "tiny.yaml")


@pytest.fixture(scope="module")
def both(tiny: ReleaseSpec) -> list[dict[str, Any]]:
    """Tags heard from GitHub and from a GitLab mirror."""
    return render_triggers(
        [tiny],
        GITHUB_REPO,
        webhook_url=HOOK_URL,
        github=GitHubHook(),
        gitlab=GitLabHook(project="my-group/llmflow"),
    )


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


@pytest.fixture(scope="module")
def events_registry(registry: SchemaRegistry) -> SchemaRegistry:
    """The shared registry, with Argo Events' kinds from its JSON schema.

    The upstream CRD files of Argo Events keep `spec` open
    (`x-kubernetes-preserve-unknown-fields`), so they check nothing below it; its release's
    `schema-v1.9.11.json` describes every field.
    """
    path = SCHEMAS / "argo-events" / "schema-v1.9.11.json"
    if not path.is_file():
        pytest.fail(f"upstream schema missing: {path} not found (expected ../shared/schemas)")
    definitions = json.loads(path.read_text())["definitions"]
    crds = dict(registry.crds)
    for kind in ("EventSource", "Sensor"):
        crds[(API_VERSION, kind)] = {
            "definitions": definitions,
            "$ref": f"#/definitions/io.argoproj.events.v1alpha1.{kind}",
        }
    return dataclasses.replace(registry, crds=crds, _validators={})


def _problems(objects: list[dict[str, Any]], registry: SchemaRegistry) -> list[str]:
    return [str(p) for p in validate_documents([("triggers", o) for o in objects], registry)]


def test_every_object_validates_strictly(
    both: list[dict[str, Any]], events_registry: SchemaRegistry
) -> None:
    kinds = [o["kind"] for o in both]
    assert kinds == ["EventSource", "Sensor", "ServiceAccount", "Role", "RoleBinding"]
    assert _problems(both, events_registry) == []
    for obj in both[2:]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # The Workflow inside the trigger is open in Argo Events' schema: check it as a Workflow.
    for trigger in _one(both, "Sensor")["spec"]["triggers"]:
        workflow = trigger["template"]["argoWorkflow"]["source"]["resource"]
        assert _problems([workflow], events_registry) == []


def test_strict_validation_bites(
    both: list[dict[str, Any]], events_registry: SchemaRegistry
) -> None:
    sensor_obj = copy.deepcopy(_one(both, "Sensor"))
    sensor_obj["spec"]["dependencies"][0]["filters"]["data"][0]["paths"] = "x"
    sensor_obj["spec"]["template"]["serviceAccount"] = "x"
    source = copy.deepcopy(_one(both, "EventSource"))
    source["spec"]["github"]["github"]["webhook"]["port"] = 12000
    source["spec"]["github"]["github"]["webhookSecrets"] = {"name": "x", "key": "y"}
    problems = _problems([sensor_obj, source], events_registry)
    assert any("data[0].paths: unknown field; did you mean 'path'?" in p for p in problems)
    assert any("template.serviceAccount: unknown field" in p for p in problems)
    assert any("webhook.port: 12000 is not of type 'string'" in p for p in problems)
    assert any(
        "webhookSecrets: unknown field; did you mean 'webhookSecret'?" in p for p in problems
    )


def test_the_sensor_passes_argo_events_own_checks(both: list[dict[str, Any]]) -> None:
    """What the controller's `ValidateSensor` (pkg/reconciler/sensor/validate.go) demands."""
    spec = _one(both, "Sensor")["spec"]
    names = {dep["name"] for dep in spec["dependencies"]}
    assert len(names) == len(spec["dependencies"])
    for dep in spec["dependencies"]:
        assert dep["eventSourceName"] == NAME and dep["eventName"]
        for f in dep["filters"]["data"]:
            assert f["path"] and f["type"] in {"string", "bool"} and all(f["value"])
            assert f.get("comparator", "") in {"", "=", "!="}
    triggers = [t["template"] for t in spec["triggers"]]
    assert len({t["name"] for t in triggers}) == len(triggers)
    for template in triggers:
        assert template["conditions"] in names  # else it would wait for every dependency
        argo = template["argoWorkflow"]
        assert argo["operation"] == "submit" and argo["source"]["resource"]
        for param in argo["parameters"]:
            assert param["src"]["dependencyName"] == template["conditions"] and param["dest"]


def test_the_sensor_account_may_submit_workflows_and_nothing_else(
    both: list[dict[str, Any]],
) -> None:
    account = "llmflow-release-trigger"
    assert _one(both, "Sensor")["spec"]["template"]["serviceAccountName"] == account
    assert _one(both, "ServiceAccount")["metadata"] == {
        "name": account,
        "namespace": "llmflow",
        "labels": {"app.kubernetes.io/part-of": "llmflow"},
    }
    assert _one(both, "Role")["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "list"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]},
    ]
    binding = _one(both, "RoleBinding")
    assert binding["roleRef"]["name"] == account
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "llmflow"}
    ]


def test_secrets_are_referenced_never_written(both: list[dict[str, Any]]) -> None:
    spec = _one(both, "EventSource")["spec"]
    github, gitlab = spec["github"]["github"], spec["gitlab"]["gitlab"]
    assert github["apiToken"] == {"name": "github-access", "key": "token"}
    assert github["webhookSecret"] == {"name": "github-access", "key": "webhook-secret"}
    assert gitlab["accessToken"] == {"name": "gitlab-access", "key": "token"}
    assert gitlab["secretToken"] == {"name": "gitlab-access", "key": "webhook-secret"}
    assert github["repositories"] == [{"owner": "my-org", "names": ["llmflow"]}]
    assert github["events"] == ["push"]
    assert gitlab["projects"] == ["my-group/llmflow"] and gitlab["events"] == ["TagPushEvents"]
    assert github["webhook"] == {
        "endpoint": "/release-tags/llmflow/github",
        "port": "12000",
        "method": "POST",
        "url": HOOK_URL,
    }
    assert spec["service"]["ports"] == [{"name": "webhook", "port": 12000, "targetPort": 12000}]


def test_organization_hooks_and_github_enterprise() -> None:
    hooks = Hooks(
        webhook_url=HOOK_URL,
        github=GitHubHook(organizations=("my-org",), enterprise_url="https://git.example.com/"),
    )
    github = event_source("ml", hooks, "my-org/llmflow")["spec"]["github"]["github"]
    assert github["organizations"] == ["my-org"] and "repositories" not in github
    assert github["githubBaseURL"] == "https://git.example.com/api/v3/"
    assert github["githubUploadURL"] == "https://git.example.com/api/uploads/"
    gitlab = event_source(
        "ml", Hooks(webhook_url=HOOK_URL, gitlab=GitLabHook(groups=("ml/platform",)))
    )["spec"]["gitlab"]["gitlab"]
    assert gitlab["groups"] == ["ml/platform"] and "projects" not in gitlab


def test_one_set_per_namespace_with_its_model(tiny: ReleaseSpec) -> None:
    data = tiny.model_dump(mode="json", exclude_none=True)
    other = parse_spec(
        {
            **data,
            "namespace": "research",
            "service_account": "lab",
            "model": {**data["model"], "name": "big-llama"},
        }
    )
    objects = render_triggers([tiny, other], GITHUB_REPO, webhook_url=HOOK_URL)
    sensors = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Sensor"}
    assert sorted(sensors) == ["llmflow", "research"]
    ref_filter = sensors["llmflow"]["spec"]["dependencies"][0]["filters"]["data"][1]
    assert ref_filter["path"] == "body.ref"
    assert ref_filter["value"] == [ref_regex(["tiny-llama"])]
    assert sensors["research"]["spec"]["template"]["serviceAccountName"] == "lab-release-trigger"
    assert "gitlab" not in _one(objects[:5], "EventSource")["spec"]  # a github.com repo

    # Two models in one namespace would share (and replace) one `release` template.
    big = parse_spec({**data, "model": {**data["model"], "name": "big-llama"}})
    with pytest.raises(TriggerError, match="models big-llama, tiny-llama share it"):
        render_triggers([tiny, big], GITHUB_REPO, webhook_url=HOOK_URL)

    clash = parse_spec({**data, "service_account": "other"})
    with pytest.raises(SpecError) as caught:
        render_triggers([tiny, clash], GITHUB_REPO, webhook_url=HOOK_URL)
    assert str(caught.value) == (
        "namespace 'llmflow': its specs' service_account differ (tiny-llama: 'llmflow', "
        "tiny-llama: 'other'); the namespace has one release Sensor and one account for it: "
        "use one prefix"
    )


@pytest.mark.parametrize(
    ("repo", "location"),
    [
        ("https://github.com/my-org/llmflow.git", ("github.com", "my-org/llmflow")),
        ("https://github.com/my-org/llmflow", ("github.com", "my-org/llmflow")),
        ("git@github.com:my-org/llmflow.git", ("github.com", "my-org/llmflow")),
        (
            "ssh://git@gitlab.example.com:2222/ml/platform/llmflow.git",
            ("gitlab.example.com", "ml/platform/llmflow"),
        ),
        ("https://user@GitLab.com/my-group/llmflow.git/", ("gitlab.com", "my-group/llmflow")),
    ],
)
def test_repo_urls(repo: str, location: tuple[str, str]) -> None:
    assert repo_location(repo) == location


def test_bad_hosting_settings_say_what_to_give(tiny: ReleaseSpec) -> None:
    with pytest.raises(TriggerError, match="not a git URL with an owner and a name; expected e.g."):
        repo_location("https://github.com/llmflow")
    with pytest.raises(TriggerError) as caught:
        render_triggers([tiny], "https://git.example.com/ml/llmflow.git", webhook_url=HOOK_URL)
    assert str(caught.value) == (
        "repo 'https://git.example.com/ml/llmflow.git': cannot tell whether git.example.com is "
        "GitHub or GitLab; pass github=GitHubHook(enterprise_url=...) or "
        "gitlab=GitLabHook(base_url=...)"
    )
    with pytest.raises(TriggerError, match=r"webhook_url = 'hooks\.example\.com': must be an http"):
        render_triggers([tiny], GITHUB_REPO, webhook_url="hooks.example.com")
    with pytest.raises(TriggerError, match="github.repository: 'llmflow' is not a repository path"):
        GitHubHook(repository="llmflow")
    with pytest.raises(TriggerError, match="no release specs"):
        render_triggers([], GITHUB_REPO, webhook_url=HOOK_URL)
    with pytest.raises(TriggerError, match="needs a GitHub repository or a GitLab project"):
        sensor("llmflow", ["tiny-llama"], "llmflow-release-trigger")


# --- webhook payloads through the Sensor ------------------------------------------------------


def _delivery(name: str) -> tuple[dict[str, str], dict[str, Any]]:
    data = json.loads((DATA / name).read_text())
    return data["headers"], data["payload"]


def _github(mutate: dict[str, Any] | None = None, event: str = "push") -> dict[str, Any]:
    headers, body = _delivery("github_push_tag.json")
    headers = {**headers, "X-GitHub-Event": event}
    return sp.github_event(headers, {**body, **(mutate or {})})


def _gitlab(mutate: dict[str, Any] | None = None) -> dict[str, Any]:
    headers, body = _delivery("gitlab_tag_push.json")
    return sp.gitlab_event(headers, {**body, **(mutate or {})})


def _submitted(objects: list[dict[str, Any]], provider: str, data: Any) -> list[sp.Submission]:
    submissions, _ = sp.sensor_submissions(_one(objects, "Sensor"), NAME, provider, data)
    return submissions


def _arguments(workflow: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}


def test_a_github_tag_push_submits_the_release(
    both: list[dict[str, Any]], events_registry: SchemaRegistry
) -> None:
    data = _github()
    assert data["headers"]["X-Github-Event"] == ["push"]  # Go's canonical header names
    assert data["body"]["X-GitHub-Event"] == "push"  # copied into the body by the source
    [submission] = _submitted(both, "github", data)
    assert submission.trigger == "release-from-github"
    assert submission.namespace == "llmflow"
    workflow = submission.workflow
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "release"}
    assert workflow["metadata"]["generateName"] == "release-"
    assert _arguments(workflow) == {
        "tag": TAG,
        "commit": COMMIT,  # head_commit.id: `after` is the annotated tag's object
        "revision": COMMIT,  # what build-images checks out
        "repo": "https://github.com/my-org/llmflow.git",
    }
    assert data["body"]["after"] != COMMIT
    assert workflow["metadata"]["labels"]["events.argoproj.io/sensor"] == NAME
    assert _problems([workflow], events_registry) == []


def test_a_gitlab_tag_push_submits_the_release(both: list[dict[str, Any]]) -> None:
    [submission] = _submitted(both, "gitlab", _gitlab())
    assert submission.trigger == "release-from-gitlab"
    assert submission.workflow["spec"]["workflowTemplateRef"] == {"name": "release"}
    assert _arguments(submission.workflow) == {
        "tag": TAG,
        "commit": COMMIT,
        "revision": COMMIT,
        "repo": "https://gitlab.com/my-group/llmflow.git",
    }


def test_a_lightweight_github_tag_gives_the_same_commit(both: list[dict[str, Any]]) -> None:
    [submission] = _submitted(both, "github", _github({"after": COMMIT}))
    assert _arguments(submission.workflow)["commit"] == COMMIT


GITHUB_DROPPED = {
    "branch push": {
        "ref": "refs/heads/main",
        "before": "1f2e3d4c5b6a79880716253443526170f1e2d3c4",
        "created": False,
        "base_ref": None,
    },
    "tag deletion": {
        "before": "4e1f6b2a9c3d8e7f0a1b2c3d4e5f60718293a4b5",
        "after": sp.ZERO_SHA,
        "created": False,
        "deleted": True,
        "base_ref": None,
        "head_commit": None,
    },
    "malformed tag": {"ref": "refs/tags/release/tiny-llama/latest"},
    "another model's tag": {"ref": "refs/tags/release/big-llama/1.0.0"},
    "a tag in another repository": {
        "repository": {
            **_delivery("github_push_tag.json")[1]["repository"],
            "full_name": "my-org/other",
            "clone_url": "https://github.com/my-org/other.git",
        }
    },
}


@pytest.mark.parametrize("case", sorted(GITHUB_DROPPED))
def test_github_pushes_that_release_nothing(case: str, both: list[dict[str, Any]]) -> None:
    data = _github(GITHUB_DROPPED[case])
    submissions, verdicts = sp.sensor_submissions(_one(both, "Sensor"), NAME, "github", data)
    assert submissions == []
    assert not verdicts["github"].passed


def test_a_github_ping_releases_nothing(both: list[dict[str, Any]]) -> None:
    headers, _ = _delivery("github_push_tag.json")
    ping = {
        "zen": "Keep it logically awesome.",
        "hook_id": 492807513,
        "hook": {"type": "Repository"},
    }
    data = sp.github_event({**headers, "X-GitHub-Event": "ping"}, ping)
    submissions, verdicts = sp.sensor_submissions(_one(both, "Sensor"), NAME, "github", data)
    assert submissions == [] and not verdicts["github"].passed
    assert _submitted(both, "github", _github(event="create")) == []


GITLAB_DROPPED = {
    "tag deletion": {
        "before": "6d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c2d4e",
        "after": sp.ZERO_SHA,
        "checkout_sha": None,
        "commits": [],
        "total_commits_count": 0,
    },
    "zero checkout sha": {"checkout_sha": sp.ZERO_SHA},
    "malformed tag": {"ref": "refs/tags/release/tiny-llama/latest"},
    "branch push": {"object_kind": "push", "event_name": "push", "ref": "refs/heads/main"},
}


@pytest.mark.parametrize("case", sorted(GITLAB_DROPPED))
def test_gitlab_pushes_that_release_nothing(case: str, both: list[dict[str, Any]]) -> None:
    assert _submitted(both, "gitlab", _gitlab(GITLAB_DROPPED[case])) == []


def test_each_host_fires_only_its_own_trigger(both: list[dict[str, Any]]) -> None:
    triggers = [s.trigger for s in _submitted(both, "github", _github())]
    triggers += [s.trigger for s in _submitted(both, "gitlab", _gitlab())]
    assert triggers == ["release-from-github", "release-from-gitlab"]


# --- the recording itself ---------------------------------------------------------------------


def test_the_recording_refuses_what_it_does_not_model() -> None:
    with pytest.raises(sp.NotModelled):
        sp.go_regex(r"^\d+$")
    with pytest.raises(sp.NotModelled):
        sp.go_regex(r"^[[:alpha:]]+$")
    with pytest.raises(sp.NotModelled):
        sp.go_template('{{ .Input.body.ref | replace "a" "b" }}', {})
    with pytest.raises(sp.NotModelled):
        sp.gjson_get({}, "body.commits.#")
    with pytest.raises(sp.NotModelled):
        sp.sjson_set({"a": {}}, "a.b.c", "x")
    assert sp.go_regex("^a$").search("a\n") is None  # Go's `$` is the end of the text
    assert sp.gjson_get({"a.b": {"c": 1}}, r"a\.b.c") == sp.Result(True, 1)
    assert sp.gjson_get({"a": [{"b": "x"}]}, "a.0.b").string() == "x"
    assert sp.gjson_get({"a": None}, "a").exists  # gjson: a JSON null exists
    with pytest.raises(sp.TemplateError):  # missing key: Go's "invalid value; expected string"
        sp.go_template('{{ .Input.body.nope | trimPrefix "x" }}', {"body": {}})


# --- GitHub Actions ---------------------------------------------------------------------------


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("actionlint")
    if not binary.exists():
        pytest.fail(f"{binary} not found: install the test extra (pip install -e '.[dev]')")
    # shellcheck and pyflakes are used when on PATH; off, the check is the same everywhere.
    command = [str(binary), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_release_workflow_passes_actionlint() -> None:
    result = _actionlint(WORKFLOW_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_release_workflow(tmp_path: Path) -> None:
    text = WORKFLOW_FILE.read_text()
    broken = tmp_path / "release.yaml"
    broken.write_text(text.replace("steps.tag.outputs.spec", "steps.check.outputs.spec"))
    result = _actionlint(broken)
    assert result.returncode == 1
    assert 'property "check" is not defined' in result.stdout
    broken.write_text(text.replace("runs-on:", "runs_on:"))
    assert _actionlint(broken).returncode == 1


def test_the_release_workflow_checks_the_tag_then_submits_it() -> None:
    workflow = yaml.safe_load(WORKFLOW_FILE.read_text())
    assert workflow[True]["push"]["tags"] == ["release/*/*"]  # `on` reads as True in YAML 1.1
    steps = workflow["jobs"]["submit"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'llmflow release-tag check "$GITHUB_REF_NAME"' in runs
    assert "llmflow submit release -f" in runs
    for name in ("tag", "commit", "repo"):
        assert f'--set "{name}=' in runs
    install = next(step["run"] for step in steps if "pip install" in step.get("run", ""))
    assert "[" not in install and "torch" not in install  # no extras: no torch at all
    env = next(step["env"] for step in steps if "submit release" in step.get("run", ""))
    assert env["ARGO_SERVER"] == "${{ secrets.ARGO_SERVER }}"
    assert env["ARGO_TOKEN"] == "${{ secrets.ARGO_TOKEN }}"
