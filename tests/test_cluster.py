"""cluster/: least-privilege Roles derived from the pipelines, overlays that build and pass
strict validation, the pre-warm DaemonSet running the fetch step, generated files up to date.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from serving.monitoring import QUEUE_METRIC
from workflows.cli import main
from workflows.cluster_cli import kustomize_documents
from workflows.manifest_text import quote_placeholders
from workflows.pipelines import discover
from workflows.rbac import RBACError, role_rules, template_verbs
from workflows.render import render
from workflows.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SPEC = ROOT / "releases" / "tiny.yaml"
SCHEMAS = ROOT.parent / "shared" / "schemas"
PIPELINES = sorted(discover())
OVERLAYS = ["dev", "prod"]

# What each Argo resource action makes kubectl ask the API server, written down here from
# argo-workflows workflow/executor/resource.go and kubectl pkg/cmd/{apply,delete,replace,...},
# independently of workflows/rbac.py.
KUBECTL_VERBS = {
    "create": {"create"},
    "apply": {"get", "create", "patch"},
    "patch": {"patch"},
    "replace": {"get", "update"},
    "delete": {"delete", "get", "list", "watch"},
    "get": {"get"},
}


@cache
def rendered(name: str) -> dict[str, Any]:
    return render(name, load_spec(SPEC))


@cache
def built(directory: str) -> tuple[dict[str, Any], ...]:
    return tuple(obj for _, obj in kustomize_documents(CLUSTER / directory))


def objects(directory: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in built(directory) if o["kind"] == kind}


@cache
def crd_plurals() -> dict[tuple[str, str], str]:
    """(group, kind) -> plural, from the upstream CRDs in ../shared/schemas."""
    plurals = {}
    for path in SCHEMAS.rglob("*.yaml"):
        text = path.read_text()
        if "CustomResourceDefinition" not in text[:2000]:
            continue
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names = doc["spec"]["names"]
                plurals[(doc["spec"]["group"], names["kind"])] = names["plural"]
    return plurals


def plural(api_version: str, kind: str) -> str:
    """The resource name: a CRD's own `names.plural`, else the built-in kinds' rule."""
    group = api_version.rpartition("/")[0]
    # Deployment, Service, PodDisruptionBudget, ConfigMap, Secret...: lower-case, plus "s"
    return crd_plurals().get((group, kind), kind.lower() + "s")


def expected_rules(workflow: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    needed: dict[tuple[str, str], set[str]] = {("argoproj.io", "workflowtaskresults"): set()}
    needed[("argoproj.io", "workflowtaskresults")] |= {"create", "patch"}
    for template in workflow["spec"]["templates"]:
        resource = template.get("resource")
        if resource is None:
            continue
        manifest = yaml.safe_load(quote_placeholders(resource["manifest"]))
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        key = (api_version.rpartition("/")[0], plural(api_version, kind))
        verbs = set(KUBECTL_VERBS[resource["action"]])
        if resource.get("successCondition") or resource.get("failureCondition"):
            verbs.add("get")  # polled with GET until one holds
        if any(
            "jsonPath" in p.get("valueFrom", {})
            for p in template.get("outputs", {}).get("parameters", [])
        ):
            verbs.add("get")  # `kubectl get -o jsonpath=...`
        needed.setdefault(key, set()).update(verbs)
        if resource.get("setOwnerReference"):  # blockOwnerDeletion, where admission checks it
            needed.setdefault(("argoproj.io", "workflows/finalizers"), set()).add("update")
    return needed


def granted(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    result: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


@pytest.mark.parametrize("name", PIPELINES)
def test_role_allows_exactly_what_the_pipeline_does(name: str) -> None:
    from workflows.templates import referenced_templates

    role = objects("base", "Role")[f"llmflow-{name}"]
    # A pipeline composed by templateRef (the release) runs its stages' templates too.
    workflow = rendered(name)
    expected = expected_rules(workflow)
    for ref in referenced_templates(workflow):
        for key, verbs in expected_rules(rendered(ref)).items():
            expected.setdefault(key, set()).update(verbs)
    assert granted(role) == expected


def test_deploy_role_covers_every_kind_it_manages() -> None:
    rules = granted(objects("base", "Role")["llmflow-deploy"])
    assert rules[("apps", "deployments")] == {"get", "create", "patch", "delete", "list", "watch"}
    assert rules[("gateway.networking.k8s.io", "httproutes")] == {"get", "create", "patch"}
    assert ("kubeflow.org", "pytorchjobs") not in rules
    finetune = granted(objects("base", "Role")["llmflow-finetune"])
    # Created and watched; deleted by the exit handler (kubectl waits with list and watch).
    assert finetune[("kubeflow.org", "pytorchjobs")] == {"create", "get", "delete", "list", "watch"}
    assert finetune[("argoproj.io", "workflows/finalizers")] == {"update"}


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_no_wildcards_and_no_cluster_roles(directory: str) -> None:
    kinds = {o["kind"] for o in built(directory)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    for role in objects(directory, "Role").values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in value for value in rule.get(field, [])), (role, rule)


@pytest.mark.parametrize("name", PIPELINES)
def test_each_pipeline_runs_as_its_own_bound_account(name: str) -> None:
    workflow = rendered(name)
    account = workflow["spec"]["serviceAccountName"]
    assert account == f"llmflow-{name}"
    assert account in objects("base", "ServiceAccount")
    binding = objects("base", "RoleBinding")[account]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": account,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "llmflow"}
    ]


def _accounts_in(value: Any) -> set[str]:
    """Every serviceAccountName in a value, looking into resource templates' manifests."""
    if isinstance(value, dict):
        found = {value["serviceAccountName"]} if "serviceAccountName" in value else set()
        if isinstance(value.get("manifest"), str):
            found |= _accounts_in(yaml.safe_load(quote_placeholders(value["manifest"])))
        return found.union(*(_accounts_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_accounts_in(v) for v in value))
    return set()


def test_serving_and_training_pods_use_accounts_without_roles() -> None:
    deploy, finetune = _accounts_in(rendered("deploy")), _accounts_in(rendered("finetune"))
    assert deploy == {"llmflow-deploy", "llmflow-serving"}
    assert finetune == {"llmflow-finetune", "llmflow-training"}
    accounts = objects("base", "ServiceAccount")
    bound = {s["name"] for b in objects("base", "RoleBinding").values() for s in b["subjects"]}
    for account in ("llmflow-serving", "llmflow-training"):
        assert account in accounts
        assert account not in bound


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_strictly(overlay: str, registry) -> None:
    from workflows.validation import validate_documents

    docs = kustomize_documents(CLUSTER / "overlays" / overlay)
    kinds = {obj["kind"] for _, obj in docs}
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "PriorityClass"} <= kinds
    assert {"DaemonSet", "WorkflowTemplate", "Role", "ConfigMap"} <= kinds
    assert [str(p) for p in validate_documents(docs, registry)] == []


def test_validation_of_overlays_is_strict(registry) -> None:
    from workflows.validation import validate_documents

    policy = json.loads(json.dumps(objects("overlays/prod", "NetworkPolicy")["vllm-ingress"]))
    policy["spec"]["podSelecter"] = policy["spec"]["podSelector"]
    problems = [str(p) for p in validate_documents([("prod", policy)], registry)]
    assert any("podSelecter" in p for p in problems), problems


def test_lint_takes_a_kustomization() -> None:
    result = CliRunner().invoke(
        main,
        ["lint", "--schemas", str(SCHEMAS), *("--kustomize", str(CLUSTER / "overlays" / "dev"))],
    )
    assert result.exit_code == 0, result.output


def test_overlays_differ_where_they_should() -> None:
    dev = objects("overlays/dev", "ResourceQuota")["llmflow"]["spec"]["hard"]
    prod = objects("overlays/prod", "ResourceQuota")["llmflow"]["spec"]["hard"]
    assert dev["requests.nvidia.com/gpu"] == "0"
    assert int(prod["requests.nvidia.com/gpu"]) > 0
    dev_pod = objects("overlays/dev", "DaemonSet")["llmflow-prewarm-tiny-llama"]["spec"]["template"]
    prod_pod = objects("overlays/prod", "DaemonSet")["llmflow-prewarm-tiny-llama"]["spec"][
        "template"
    ]
    assert "nodeSelector" not in dev_pod["spec"]
    assert prod_pod["spec"]["nodeSelector"] == {"llmflow.io/node-pool": "gpu"}
    assert objects("overlays/prod", "LimitRange")["llmflow"]["spec"]["limits"][0][
        "maxLimitRequestRatio"
    ] == {"memory": "2"}


def test_priority_classes_are_ordered() -> None:
    classes = objects("base", "PriorityClass")
    values = [classes[f"llmflow-{c}"]["value"] for c in ("serving", "training", "batch")]
    assert values == sorted(values, reverse=True) and len(set(values)) == 3
    assert all(c["description"] for c in classes.values())


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_prewarm_runs_the_fetch_step(directory: str) -> None:
    workflow = rendered("fetch-weights")
    step = next(t for t in workflow["spec"]["templates"] if t["name"] == "fetch-weights")
    script = step["script"]
    daemonset = objects(directory, "DaemonSet")["llmflow-prewarm-tiny-llama"]
    pod = daemonset["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == script["command"]
    # Argo appends the file it wrote `{{inputs.parameters}}` to; the DaemonSet, its ConfigMap's.
    assert fetch["args"][:-1] == script["args"]
    assert fetch["args"][:-1] == ["-m", "hera.workflows.runner", "-e", "steps.fetch:fetch_weights"]
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert fetch["image"] == parameters["image"]
    # the inputs file names every input of the step, with the workflow's values
    config = objects(directory, "ConfigMap")["llmflow-prewarm-tiny-llama"]
    inputs = {i["name"]: i["value"] for i in json.loads(config["data"]["inputs.json"])}
    assert fetch["args"][-1].endswith("/inputs.json")
    assert list(inputs) == [p["name"] for p in step["inputs"]["parameters"]]
    assert inputs["source"] == parameters["source"]
    assert inputs["model-name"] == parameters["model-name"]
    # the cache: the spec's host path, mounted where the step expects it
    spec = load_spec(SPEC)
    (cache_mount,) = script["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[cache_mount["name"]]["hostPath"]["path"] == spec.model.cache.host_path
    assert cache_mount in fetch["volumeMounts"]
    assert {e["name"] for e in fetch["env"]} == {e["name"] for e in script["env"]}
    assert pod["containers"][0]["image"].startswith("registry.k8s.io/pause:")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    exprs = selector.get("matchExpressions", [])
    assert all(e["operator"] == "Exists" for e in exprs)
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and all(
        e["key"] in labels for e in exprs
    )


def test_vllm_policy_admits_the_probe_and_nothing_of_ours_else() -> None:
    policy = objects("base", "NetworkPolicy")["vllm-ingress"]
    deploy = rendered("deploy")
    deployments = [
        yaml.safe_load(t["resource"]["manifest"])
        for t in deploy["spec"]["templates"]
        if "resource" in t
        and '"Deployment"' in json.dumps(yaml.safe_load(t["resource"]["manifest"]))
    ]
    vllm_pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments if "spec" in d]
    assert vllm_pods and all(
        _selects(policy["spec"]["podSelector"], labels) for labels in vllm_pods
    )
    # pipeline pods are not vLLM pods, and only the deploy pipeline's are admitted
    sources = [s["podSelector"] for s in policy["spec"]["ingress"][0]["from"] if "podSelector" in s]
    for name in PIPELINES:
        pod_labels = rendered(name)["spec"]["podMetadata"]["labels"]
        assert not _selects(policy["spec"]["podSelector"], pod_labels)
        assert any(_selects(s, pod_labels) for s in sources) == (name == "deploy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_prometheus_configs() -> None:
    maps = objects("base", "ConfigMap")
    adapter = yaml.safe_load(maps["llmflow-prometheus-adapter"]["data"]["config.yaml"])
    (rule,) = adapter["rules"]
    assert rule["name"]["as"] == QUEUE_METRIC
    assert "vllm:num_requests_waiting" in rule["seriesQuery"]
    scrape = yaml.safe_load(maps["llmflow-prometheus-scrape"]["data"]["prometheus.yml"])
    (job,) = scrape["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["llmflow"]}}]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    # Debian's promtool is built without Kubernetes service discovery: check everything else
    # (relabelling, regexes, paths) with the discovery swapped for a static target.
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    del job["kubernetes_sd_configs"]
    result = subprocess.run(
        [promtool, "check", "config", "/dev/stdin"],
        input=yaml.safe_dump(scrape),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_match_cluster_render(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["cluster", "render", "-f", str(SPEC), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    committed = CLUSTER / "base" / "generated"
    fresh = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*.yaml")}
    current = {
        p.relative_to(committed).as_posix(): p.read_text() for p in committed.rglob("*.yaml")
    }
    assert sorted(current) == sorted(fresh), "run `llmflow cluster render` and commit the result"
    for rel, text in fresh.items():
        assert current[rel] == text, f"{rel} is stale: run `llmflow cluster render`"


def test_templates_are_the_pipelines() -> None:
    templates = objects("base", "WorkflowTemplate")
    assert sorted(templates) == PIPELINES
    for name in PIPELINES:
        assert templates[name]["spec"] == rendered(name)["spec"]


def test_unknown_kinds_and_actions_are_clear_errors() -> None:
    def template(action: str, kind: str) -> dict[str, Any]:
        manifest = yaml.safe_dump({"apiVersion": "example.com/v1", "kind": kind})
        return {"name": "x", "resource": {"action": action, "manifest": manifest}}

    with pytest.raises(RBACError, match="'Widget'.*RESOURCES"):
        template_verbs(template("create", "Widget"))
    with pytest.raises(RBACError, match="action 'scale'"):
        template_verbs(template("scale", "Widget"))
    assert role_rules([]) == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]


def test_other_launchers_and_autoscale_need_their_own_rules() -> None:
    data = yaml.safe_load(SPEC.read_text())
    data["finetune"]["launcher"] = "trainjob"
    data["serving"]["autoscale"] = {"min_replicas": 1, "max_replicas": 2}
    from workflows.spec import parse_spec

    spec = parse_spec(data)
    finetune = granted({"rules": role_rules([render("finetune", spec)])})
    trainjobs = finetune[("trainer.kubeflow.org", "trainjobs")]
    assert trainjobs == {"create", "get", "delete", "list", "watch"}
    deploy = granted({"rules": role_rules([render("deploy", spec)])})
    assert deploy[("autoscaling", "horizontalpodautoscalers")] == {"get", "create", "patch"}
