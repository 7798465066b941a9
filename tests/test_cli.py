"""The command line: render, lint and submit, as a user types them."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.argo_standin import ArgoStandIn
from workflows.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "releases" / "tiny.yaml")


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(main, list(args), catch_exceptions=False, **kwargs)

    return invoke


def test_every_command_has_help(cli) -> None:
    top = cli("--help")
    assert top.exit_code == 0
    for command in ["render", "lint", "submit", "fetch", "tiny-model", "demo", "pipelines"]:
        assert command in top.output
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Usage: main " + command in result.output.replace(
            "llmflow", "main"
        )


def test_pipelines_lists_every_pipeline(cli) -> None:
    output = cli("pipelines").output
    assert "fetch-weights" in output and "finetune" in output


def test_render_prints_a_workflow_that_lint_accepts(cli, tmp_path: Path, schemas_dir) -> None:
    result = cli("render", "fetch-weights", "-f", SPEC)
    assert result.exit_code == 0
    workflow = yaml.safe_load(result.output)
    assert workflow["kind"] == "Workflow"
    assert workflow["spec"]["arguments"]["parameters"][2] == {
        "description": "where the weights come from: s3://bucket/prefix, "
        "hf://org/name@revision or file:///path",
        "name": "source",
        "value": "s3://llmflow-models/tiny-llama",
    }
    path = tmp_path / "wf.yaml"
    path.write_text(result.output)
    lint = cli("lint", str(path), "--schemas", str(schemas_dir))
    assert lint.exit_code == 0, lint.output


def test_render_to_a_folder(cli, tmp_path: Path) -> None:
    result = cli("render", "fetch-weights", "-f", SPEC, "-o", str(tmp_path))
    assert result.exit_code == 0
    assert (tmp_path / "fetch-weights.yaml").is_file()


def test_no_secret_values_in_rendered_yaml(cli) -> None:
    output = cli("render", "fetch-weights", "-f", SPEC).output
    workflow = yaml.safe_load(output)
    template = next(t for t in workflow["spec"]["templates"] if "script" in t)
    env = {e["name"]: e for e in template["script"]["env"]}
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"]:
        assert "value" not in env[key] and env[key]["valueFrom"]["secretKeyRef"]["key"] == key


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda wf: wf["spec"].__setitem__("entrypiont", wf["spec"].pop("entrypoint")),
            "spec.entrypiont: unknown field; did you mean 'entrypoint'?",
        ),
        (
            lambda wf: wf["spec"]["volumes"][0]["persistentVolumeClaim"].__setitem__(
                "claimNme", "x"
            ),
            "spec.volumes[0].persistentVolumeClaim.claimNme: "
            "unknown field; did you mean 'claimName'?",
        ),
    ],
)
def test_lint_rejects_misspellings_with_the_field_path(cli, tmp_path, edit, expected) -> None:
    workflow = yaml.safe_load(cli("render", "fetch-weights", "-f", SPEC).output)
    edit(workflow)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(workflow))
    result = cli("lint", str(path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"{path}: Workflow/fetch-weights-tiny-llama-: {expected}"]


def test_lint_defaults_to_every_pipeline(cli, monkeypatch, schemas_dir) -> None:
    monkeypatch.chdir(ROOT)
    result = cli("lint", "--schemas", str(schemas_dir))
    assert result.exit_code == 0, result.output
    from workflows.pipelines import discover

    assert f"ok: {len(discover())} checked" in result.output  # one per pipeline
    assert len(discover()) >= 3
    without_crds = cli("lint")
    assert without_crds.exit_code == 1
    assert "unchecked: no schema for kubeflow.org/v1 PyTorchJob" in without_crds.output
    assert "unchecked: no schema for gateway.networking.k8s.io/v1 HTTPRoute" in (
        without_crds.output
    )
    allowed = ("PyTorchJob", "HTTPRoute", "ServiceMonitor")
    assert cli("lint", *(a for kind in allowed for a in ("--allow-unchecked", kind))).exit_code == 0


def test_lint_rejects_unchecked_kinds_unless_allowed(cli, tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: j}\nspec: {}\n"
    )
    assert cli("lint", str(path)).exit_code == 1
    assert cli("lint", str(path), "--allow-unchecked", "PyTorchJob").exit_code == 0


def test_bad_spec_is_an_error_before_anything_is_written(cli, tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("model: {name: tiny, source: 'ftp://x/y'}\n")
    result = CliRunner().invoke(
        main, ["render", "fetch-weights", "-f", str(spec), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "model.source = 'ftp://x/y'" in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_pipeline(cli) -> None:
    result = CliRunner().invoke(main, ["render", "nope", "-f", SPEC])
    assert result.exit_code == 2
    assert (
        "known pipelines: build-images, deploy, evaluate, fetch-weights, finetune" in result.output
    )


def test_submit_sends_a_valid_create_request(cli, schemas_dir) -> None:
    with ArgoStandIn(schemas_dir / "argo-workflows" / "swagger-v4.1.2.json") as argo:
        result = cli(
            "submit",
            "fetch-weights",
            "-f",
            SPEC,
            "--host",
            argo.url,
            "--token",
            argo.token,
            "-n",
            "team-a",
            "--apply-templates",
            "--set",
            "verify=full",
        )
        assert argo.rejected == []
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "fetch-weights-tiny-llama-x7k2p"
    operations = [r.operation for r in argo.requests]
    assert operations == [
        "WorkflowTemplateService_GetWorkflowTemplate",
        "WorkflowTemplateService_CreateWorkflowTemplate",
        "WorkflowService_CreateWorkflow",
    ]
    request = argo.requests[-1]
    assert request.path == "/api/v1/workflows/team-a"
    workflow = request.body["workflow"]
    assert workflow["metadata"]["namespace"] == "team-a"
    assert workflow["spec"] == {
        "workflowTemplateRef": {"name": "fetch-weights"},
        "arguments": {"parameters": [{"name": "verify", "value": "full"}]},
    }


def test_submit_refused_token_is_a_clear_error(cli, schemas_dir) -> None:
    with ArgoStandIn(schemas_dir / "argo-workflows" / "swagger-v4.1.2.json") as argo:
        result = CliRunner().invoke(
            main, ["submit", "fetch-weights", "-f", SPEC, "--host", argo.url, "--token", "wrong"]
        )
    assert result.exit_code == 2
    assert f"the Argo server at {argo.url} refused the WorkflowTemplate (401)" in result.output
    assert "check --token/ARGO_TOKEN" in result.output
    assert "wrong" not in result.output


def test_submit_without_a_server(cli, monkeypatch) -> None:
    monkeypatch.delenv("ARGO_SERVER", raising=False)
    result = CliRunner().invoke(main, ["submit", "fetch-weights", "-f", SPEC])
    assert result.exit_code == 2 and "no Argo server given" in result.output


def test_submit_to_an_unreachable_server(cli) -> None:
    from workflows.local.s3 import free_port

    result = CliRunner().invoke(
        main, ["submit", "fetch-weights", "-f", SPEC, "--host", f"http://127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 2 and "cannot reach the Argo server" in result.output


def test_the_stand_in_rejects_what_argo_would(schemas_dir) -> None:
    import requests

    with ArgoStandIn(schemas_dir / "argo-workflows" / "swagger-v4.1.2.json") as argo:
        auth = {"Authorization": f"Bearer {argo.token}"}
        bad = {"workflow": {"metadata": {"generateName": "x-"}, "spec": {"entrypiont": "main"}}}
        assert (
            requests.post(f"{argo.url}/api/v1/workflows/ns", json=bad, headers=auth).status_code
            == 400
        )
        assert requests.post(f"{argo.url}/api/v1/nothing", json={}, headers=auth).status_code == 404
    assert argo.requests == [] and "entrypiont" in argo.rejected[0]


def test_submit_finetune_sends_the_job_manifest(cli, schemas_dir) -> None:
    with ArgoStandIn(schemas_dir / "argo-workflows" / "swagger-v4.1.2.json") as argo:
        result = cli("templates", "apply", "-f", SPEC, "--host", argo.url, "--token", argo.token)
        assert result.exit_code == 0, result.output
    template = argo.objects["workflow-templates"][("llmflow", "finetune")]
    templates = {t["name"]: t for t in template["spec"]["templates"]}
    assert "kind: PyTorchJob" in templates["train"]["resource"]["manifest"]
    assert "AWS_SECRET_ACCESS_KEY" in templates["train"]["resource"]["manifest"]
    assert all("S3RVER" not in json.dumps(r.body) for r in argo.requests)
