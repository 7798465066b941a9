"""Strict validation: every rendered manifest passes; misspellings anywhere are caught."""

import copy
from pathlib import Path

import pytest
import yaml

from workflows.exceptions import LLMFlowError
from workflows.pipelines import discover
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import SchemaRegistry, validate_documents, validate_files

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "releases" / "tiny.yaml")


def fetch_workflow() -> dict:
    return render("fetch-weights", SPEC)


def with_resource(workflow: dict, manifest: dict) -> dict:
    workflow = copy.deepcopy(workflow)
    workflow["spec"]["templates"].append(
        {"name": "apply", "resource": {"action": "apply", "manifest": yaml.safe_dump(manifest)}}
    )
    return workflow


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "vllm"},
    "spec": {
        "selector": {"matchLabels": {"app": "vllm"}},
        "template": {
            "metadata": {"labels": {"app": "vllm"}},
            "spec": {"containers": [{"name": "vllm", "image": "vllm:0.32"}]},
        },
    },
}

HTTPROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "llm"},
    "spec": {"rules": [{"backendRefs": [{"name": "stable", "port": 8000, "weight": 90}]}]},
}


@pytest.mark.parametrize("name", sorted(discover()))
def test_every_pipeline_passes_upstream_schemas(name: str, registry: SchemaRegistry) -> None:
    assert validate_documents([(name, render(name, SPEC))], registry) == []


@pytest.mark.parametrize("name", sorted(discover()))
def test_every_pipeline_passes_hera_models(name: str) -> None:
    # Without CRDs, embedded custom resources can only be reported as unchecked.
    problems = validate_documents([(name, render(name, SPEC))], SchemaRegistry())
    assert all(p.unchecked for p in problems), [str(p) for p in problems]
    allowed = {"PyTorchJob", "TrainJob", "HTTPRoute", "ServiceMonitor"}
    assert validate_documents([(name, render(name, SPEC))], SchemaRegistry(), allowed) == []


@pytest.mark.parametrize("use_upstream", [True, False])
def test_misspelled_fields_are_reported_with_their_path(use_upstream: bool, registry) -> None:
    workflow = fetch_workflow()
    workflow["spec"]["entrypiont"] = workflow["spec"].pop("entrypoint")
    template = next(t for t in workflow["spec"]["templates"] if "script" in t)
    template["script"]["imagePullPolicyy"] = "Always"
    problems = validate_documents(
        [("wf.yaml", workflow)], registry if use_upstream else SchemaRegistry()
    )
    index = workflow["spec"]["templates"].index(template)
    assert sorted((p.path, p.message) for p in problems) == sorted(
        [
            ("spec.entrypiont", "unknown field; did you mean 'entrypoint'?"),
            (
                f"spec.templates[{index}].script.imagePullPolicyy",
                "unknown field; did you mean 'imagePullPolicy'?",
            ),
        ]
    )
    assert all(str(p).startswith("wf.yaml: Workflow/fetch-weights-tiny-llama-: ") for p in problems)


def test_wrong_types_are_reported(registry) -> None:
    workflow = fetch_workflow()
    workflow["spec"]["activeDeadlineSeconds"] = "soon"
    problems = validate_documents([("wf", workflow)], registry)
    assert [p.path for p in problems] == ["spec.activeDeadlineSeconds"]


def test_argo_expressions_are_not_type_errors(registry) -> None:
    workflow = fetch_workflow()
    workflow["spec"]["activeDeadlineSeconds"] = "{{workflow.parameters.deadline}}"
    assert validate_documents([("wf", workflow)], registry) == []


def test_embedded_builtin_manifest_is_checked(registry) -> None:
    good = with_resource(fetch_workflow(), DEPLOYMENT)
    assert validate_documents([("wf", good)], registry) == []
    bad_manifest = copy.deepcopy(DEPLOYMENT)
    bad_manifest["spec"]["replicaz"] = 2
    bad = with_resource(fetch_workflow(), bad_manifest)
    problems = validate_documents([("wf", bad)], registry)
    assert [(p.path, p.message) for p in problems] == [
        (
            "spec.templates[2].resource.manifest:spec.replicaz",
            "unknown field; did you mean 'replicas'?",
        )
    ]
    assert problems[0].document.endswith("Deployment/vllm")


def test_embedded_crd_manifest_is_checked_against_its_crd(registry) -> None:
    assert validate_documents([("wf", with_resource(fetch_workflow(), HTTPROUTE))], registry) == []
    bad = copy.deepcopy(HTTPROUTE)
    bad["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 10
    problems = validate_documents([("wf", with_resource(fetch_workflow(), bad))], registry)
    assert [p.path.split(":")[-1] for p in problems] == ["spec.rules[0].backendRefs[0].wieght"]
    assert "did you mean 'weight'" in problems[0].message


def test_unknown_kind_is_a_failure_unless_allowed() -> None:
    workflow = with_resource(fetch_workflow(), HTTPROUTE)
    problems = validate_documents([("wf", workflow)], SchemaRegistry())
    assert (
        len(problems) == 1
        and "unchecked: no schema for gateway.networking.k8s.io/v1 HTTPRoute" in problems[0].message
    )
    assert (
        validate_documents([("wf", workflow)], SchemaRegistry(), allow_unchecked={"HTTPRoute"})
        == []
    )


def test_user_crds_make_a_kind_checkable(schemas_dir: Path) -> None:
    crd = schemas_dir / "gateway-api" / "gateway.networking.k8s.io_httproutes.yaml"
    registry = SchemaRegistry.load(crd_paths=[crd])
    bad = copy.deepcopy(HTTPROUTE)
    bad["spec"]["hostnamez"] = ["x"]
    problems = validate_documents([("route.yaml", bad)], registry)
    assert [p.path for p in problems] == ["spec.hostnamez"]


def test_crds_from_a_kubectl_list(tmp_path: Path, schemas_dir: Path) -> None:
    crd = yaml.safe_load((schemas_dir / "kubeflow" / "kubeflow.org_pytorchjobs.yaml").read_text())
    listing = tmp_path / "crds.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [crd]}))
    registry = SchemaRegistry.load(crd_paths=[listing])
    assert ("kubeflow.org/v1", "PyTorchJob") in registry.crds


def test_a_file_without_crds_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(LLMFlowError, match="no CustomResourceDefinition"):
        SchemaRegistry.load(crd_paths=[path])


def test_builtin_kinds_are_strict() -> None:
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    problems = validate_documents([("d.yaml", bad)], SchemaRegistry())
    assert [(p.path, p.message) for p in problems] == [
        ("spec.template.spec.containers[0].imagee", "unknown field; did you mean 'image'?")
    ]


def test_files_with_several_documents(tmp_path: Path, registry) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all([fetch_workflow(), DEPLOYMENT, {"kind": "Nothing"}]))
    problems = validate_files([path], registry)
    assert [p.message for p in problems] == [
        "not a Kubernetes object: apiVersion and kind are required"
    ]
