"""What `llmflow submit`, `templates apply` and the Python API send an Argo server.

Every request goes to the recording stand-in (`tests/argo_standin.py`), which accepts only what
Argo v4.1.2's published REST API (its swagger spec) defines, with closed schemas, and stores
objects as the Kubernetes API does (conflicts, resourceVersions, a Workflow's template must
exist).
"""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.argo_standin import ArgoStandIn
from workflows.api import ArgoServer, WaitTimeout, submit
from workflows.cli import main
from workflows.exceptions import SpecError, SubmitError
from workflows.pipelines import discover

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "releases" / "tiny.yaml"


@pytest.fixture
def argo(schemas_dir: Path):
    with ArgoStandIn(schemas_dir / "argo-workflows" / "swagger-v4.1.2.json") as standin:
        yield standin
    assert standin.rejected == []  # every request that was sent is one Argo accepts


def server(argo: ArgoStandIn, namespace: str | None = None) -> ArgoServer:
    return ArgoServer(argo.url, argo.token, namespace)


def apply(argo: ArgoStandIn, *extra: str) -> str:
    result = CliRunner().invoke(
        main,
        ["templates", "apply", "-f", str(SPEC), "--host", argo.url, "--token", argo.token, *extra],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_templates_apply_creates_then_leaves_then_updates(argo: ArgoStandIn) -> None:
    first = apply(argo)
    names = set(discover())
    assert {line.split()[0] for line in first.splitlines()} == {
        f"workflowtemplate/{n}" for n in names
    } | {"cronworkflow/nightly-eval"}
    assert all(" created " in line for line in first.splitlines())
    stored = argo.objects["workflow-templates"]
    assert set(stored) == {("llmflow", n) for n in names}
    [cron] = argo.objects["cron-workflows"].values()
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"] == {"name": "evaluate"}
    # Every parameter of every template has a description and a value: the UI's form.
    for template in stored.values():
        for parameter in template["spec"]["arguments"]["parameters"]:
            assert parameter.get("description"), (template["metadata"]["name"], parameter)
            assert "value" in parameter
    assert all(" unchanged " in line for line in apply(argo).splitlines())
    posts = [r for r in argo.requests if r.method != "GET"]
    assert len(posts) == len(names) + 1  # the second apply wrote nothing

    stored[("llmflow", "deploy")]["spec"]["entrypoint"] = "changed-by-hand"
    third = apply(argo)
    assert "workflowtemplate/deploy updated (llmflow)" in third
    [put] = [r for r in argo.requests if r.method == "PUT"]
    assert put.operation == "WorkflowTemplateService_UpdateWorkflowTemplate"
    assert put.body["template"]["metadata"]["resourceVersion"]
    assert stored[("llmflow", "deploy")]["spec"]["entrypoint"] == "main"


def test_submit_needs_the_templates_and_they_must_match_the_spec(argo: ArgoStandIn) -> None:
    with pytest.raises(
        SubmitError, match=r"no WorkflowTemplate 'fetch-weights' .* templates apply"
    ):
        submit("fetch-weights", SPEC, target=server(argo))
    apply(argo)
    # Applied from another spec (or another llmflow): its digest is not this spec's.
    stored = argo.objects["workflow-templates"][("llmflow", "fetch-weights")]
    stored["metadata"]["annotations"]["llmflow.io/template-digest"] = "sha256:0"
    with pytest.raises(SubmitError, match="differs from what the spec renders"):
        submit("fetch-weights", SPEC, target=server(argo))
    assert "workflows" not in argo.objects  # nothing was started


def test_a_release_applies_its_stages_first_on_a_fresh_server(argo: ArgoStandIn) -> None:
    # The server refuses a template whose templateRefs name templates it does not have.
    run = submit("release", SPEC, target=server(argo), apply_templates=True)
    created = [
        r.body["template"]["metadata"]["name"]
        for r in argo.requests
        if r.method == "POST" and r.operation == "WorkflowTemplateService_CreateWorkflowTemplate"
    ]
    assert created[-1] == "release" and set(created[:-1]) == {
        "fetch-weights",
        "build-images",
        "finetune",
        "evaluate",
        "deploy",
    }
    assert run.name.startswith("release-tiny-llama-")
    # Submitted again, the server's normalised copies still match the spec.
    assert submit("release", SPEC, target=server(argo)).name


def test_submit_references_the_template_with_the_overrides(argo: ArgoStandIn) -> None:
    apply(argo)
    run = submit("finetune", SPEC, parameters={"dataset": "s3://b/d.jsonl"}, target=server(argo))
    assert run.name == "finetune-tiny-llama-x7k2p"
    create = argo.requests[-1]
    assert create.operation == "WorkflowService_CreateWorkflow"
    workflow = create.body["workflow"]
    assert workflow["metadata"]["generateName"] == "finetune-tiny-llama-"
    assert workflow["metadata"]["labels"]["llmflow.io/pipeline"] == "finetune"
    assert workflow["spec"] == {
        "workflowTemplateRef": {"name": "finetune"},
        "arguments": {"parameters": [{"name": "dataset", "value": "s3://b/d.jsonl"}]},
    }


def test_bad_parameters_are_refused_before_anything_is_sent(argo: ArgoStandIn) -> None:
    apply(argo)
    before = len(argo.requests)
    with pytest.raises(SpecError, match=r"parameter 'epoch': the finetune template has no such"):
        submit("finetune", SPEC, parameters={"epoch": "1"}, target=server(argo))
    with pytest.raises(SpecError, match=r"parameter verify = 'some': must be one of stat, full"):
        submit("fetch-weights", SPEC, parameters={"verify": "some"}, target=server(argo))
    assert [r.method for r in argo.requests[before:]] == ["GET", "GET"]


def test_wait_reads_phase_message_and_outputs(argo: ArgoStandIn) -> None:
    apply(argo)
    run = submit("fetch-weights", SPEC, target=server(argo))
    argo.statuses[run.name] = {"phase": "Running"}
    with pytest.raises(WaitTimeout, match="still Running after 0.2 s"):
        run.wait(timeout=0.2, interval=0.05)
    argo.statuses[run.name] = {
        "phase": "Succeeded",
        "outputs": {"parameters": [{"name": "digest", "value": "sha256:ab"}]},
    }
    result = run.wait(timeout=5, interval=0.05)
    assert result.succeeded and result.outputs == {"digest": "sha256:ab"}
    gets = [r for r in argo.requests if r.operation == "WorkflowService_GetWorkflow"]
    assert gets and gets[-1].path == f"/api/v1/workflows/llmflow/{run.name}"


def test_a_template_runs_without_a_spec(argo: ArgoStandIn) -> None:
    apply(argo)
    with pytest.raises(SubmitError, match="needs a namespace"):
        submit("evaluate", target=server(argo))
    run = submit("evaluate", parameters={"seed": "7"}, target=server(argo, "llmflow"))
    workflow = argo.requests[-1].body["workflow"]
    assert run.name.startswith("evaluate-tiny-llama-")
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "seed", "value": "7"}]


def test_cli_submit_waits_and_prints_the_outputs(argo: ArgoStandIn, monkeypatch) -> None:
    apply(argo)
    # The stand-in runs nothing; whatever asks for the workflow sees it finished.
    argo.statuses["fetch-weights-tiny-llama-x7k2p"] = {
        "phase": "Failed",
        "message": "child 'fetch-weights' failed",
    }
    result = CliRunner().invoke(
        main,
        ["submit", "fetch-weights", "-f", str(SPEC), "--host", argo.url, "--token", argo.token]
        + ["--wait", "--timeout", "10"],
    )
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "fetch-weights-tiny-llama-x7k2p",
        "Failed: child 'fetch-weights' failed",
    ]


def test_templates_render_is_one_valid_stream(tmp_path: Path, registry) -> None:
    from workflows.validation import validate_documents

    result = CliRunner().invoke(main, ["templates", "render", "-f", str(SPEC)])
    assert result.exit_code == 0
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in documents] == [*discover(), "nightly-eval"]
    assert [d["kind"] for d in documents][-1] == "CronWorkflow"
    problems = validate_documents([(d["metadata"]["name"], d) for d in documents], registry)
    assert problems == []
    written = CliRunner().invoke(
        main, ["templates", "render", "-f", str(SPEC), "-o", str(tmp_path)]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(f"{n}.yaml" for n in discover()), "cron-nightly-eval.yaml"]
    )
    assert written.exit_code == 0


def test_the_readme_example_runs_locally(tmp_path: Path, tiny_model: Path) -> None:
    from workflows.api import Local
    from workflows.local.templates import LocalTemplates

    root = tmp_path / "root"
    run = submit(
        "fetch-weights",
        SPEC,
        target=Local(root=root),
        parameters={"source": f"file://{tiny_model}"},
    )
    result = run.wait(timeout=600)
    assert result.succeeded, result.message
    assert result.name == run.name and result.name.startswith("fetch-weights-tiny-llama-")
    assert result.outputs["digest"].startswith("sha256:")
    assert Path(result.outputs["path"], "config.json").is_file()
    # The run referenced the template the spec renders, applied to the local platform.
    stored = LocalTemplates(root).get("llmflow", "fetch-weights")
    assert stored is not None and stored["spec"]["entrypoint"] == "main"
    assert run.wait().phase == "Succeeded"  # a finished run answers at once
