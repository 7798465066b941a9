"""The release pipeline: its composition of the other pipelines, its own steps, its exit handler."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from steps.errors import SourceError, StepError
from steps.release import finish_release, judge_release, load_release
from workflows.exceptions import RunError, SpecError
from workflows.local.engine import Run, RunOptions
from workflows.local.templates import LocalTemplates
from workflows.pipelines import get_pipeline
from workflows.release import STAGES, release_parameters
from workflows.render import render
from workflows.spec import load_spec
from workflows.templates import pipeline_templates, referenced_templates

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "releases" / "tiny.yaml"
SPEC = load_spec(SPEC_PATH)

#: `{{workflow.parameters.x}}`, `workflow.parameters.x` in an expression, or `['x']`.
_WORKFLOW_PARAMETER = re.compile(r"workflow\.parameters(?:\.([A-Za-z0-9_-]+)|\['([^']+)'\])")
#: A task's output as the release reads it: `tasks.x.outputs.parameters.y` or nil-safe.
_TASK_OUTPUT = re.compile(
    r"tasks\.([a-z0-9-]+)\.outputs\.parameters\.([a-z0-9-]+)"
    r"|tasks\['([a-z0-9-]+)'\]\?\.outputs\?\.parameters\?\.\['([a-z0-9-]+)'\]"
)


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    """The tiny spec's WorkflowTemplates, by pipeline."""
    return pipeline_templates(SPEC)


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return render("release", SPEC)


def template_named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [t for t in manifest["spec"]["templates"] if t["name"] == name]
    return found


def dag_tasks(release: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in template_named(release, "main")["dag"]["tasks"]}


def names(parameters: list[dict[str, Any]] | None) -> set[str]:
    return {p["name"] for p in parameters or []}


# --- rendering ------------------------------------------------------------------------------


def test_release_passes_strict_validation(release: dict[str, Any], registry) -> None:
    from workflows.validation import validate_documents

    assert registry.validator("argoproj.io/v1alpha1", "Workflow") is not None
    assert validate_documents([("release.yaml", release)], registry) == []


def test_stages_are_the_pipelines_main_templates(
    release: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> None:
    tasks = dag_tasks(release)
    refs = {
        name: task["templateRef"]
        for name, task in tasks.items()
        if "templateRef" in task and not name.startswith("restore-")
    }
    # The tiny spec has an images section: every stage runs, in order.
    assert list(refs) == list(STAGES)
    # A failed deploy stage has the release restore stable with deploy's own templates.
    restores = {n: t["templateRef"] for n, t in tasks.items() if n.startswith("restore-")}
    assert restores == {
        "restore-route": {"name": "deploy", "template": "route-stable"},
        "restore-remove-canary": {"name": "deploy", "template": "remove-canary"},
        "restore-remove-canary-service": {"name": "deploy", "template": "remove-canary-service"},
    }
    assert tasks["restore-route"]["depends"] == "deploy.Failed || deploy.Errored"
    assert referenced_templates(release) == set(STAGES)
    for name, ref in refs.items():
        assert ref == {"name": name, "template": "main"}
        assert ref["name"] in templates and ref["name"] != "release"
        template_named(templates[ref["name"]], "main")  # the template exists
    assert [tasks[s]["depends"] for s in STAGES[1:]] == list(STAGES[:-1])


@pytest.mark.parametrize("stage", STAGES)
def test_stage_arguments_match_the_inputs_of_its_main(
    stage: str, release: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> None:
    task = dag_tasks(release)[stage]
    main = template_named(templates[stage], "main")
    declared = (main.get("inputs") or {}).get("parameters") or []
    required = {p["name"] for p in declared if "default" not in p and "value" not in p}
    passed = names((task.get("arguments") or {}).get("parameters"))
    assert passed == names(declared), f"{stage}: passes {passed}, main declares {declared}"
    assert required <= passed
    if stage in ("evaluate", "deploy"):
        [candidate] = task["arguments"]["parameters"]
        assert candidate == {
            "name": "candidate",
            "value": "{{tasks.finetune.outputs.parameters.checkpoint}}",
        }


def test_every_workflow_parameter_a_stage_reads_is_declared_by_the_release(
    release: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> None:
    declared = names(release["spec"]["arguments"]["parameters"])
    assert {"tag", "commit", "records", "repo", "revision"} <= declared
    assert "candidate" not in declared  # passed from finetune, not a setting of the release
    read: dict[str, set[str]] = {}
    for name in [*referenced_templates(release), "release"]:
        manifest = release if name == "release" else templates[name]
        text = json.dumps(manifest["spec"]["templates"])
        read[name] = {a or b for a, b in _WORKFLOW_PARAMETER.findall(text)}
    assert read["evaluate"] and read["deploy"]  # the walk finds what the templates read
    missing = {name: sorted(used - declared) for name, used in read.items() if used - declared}
    assert missing == {}


def test_every_output_the_release_reads_is_declared(
    release: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> None:
    read = {(a or c, b or d) for a, b, c, d in _TASK_OUTPUT.findall(json.dumps(release["spec"]))}
    assert ("finetune", "checkpoint") in read and ("deploy", "digest") in read
    for task, output in sorted(read):
        source = templates[task] if task in STAGES else release
        template = template_named(source, "main" if task in STAGES else task)
        outputs = names((template.get("outputs") or {}).get("parameters"))
        assert output in outputs, f"the release reads {task}.{output}; it has {sorted(outputs)}"


def test_no_stage_sets_the_globals_finish_release_reads(
    release: dict[str, Any], templates: dict[str, dict[str, Any]]
) -> None:
    finish = template_named(release, "finish-release")
    defaults = {p["name"]: p.get("default") for p in finish["inputs"]["parameters"]}
    assert defaults["outcome"] == "{{workflow.outputs.parameters.outcome}}"
    read = {"outcome", "reason"}
    for stage in STAGES:
        globals_ = set(re.findall(r'"globalName": "([^"]+)"', json.dumps(templates[stage])))
        assert not globals_ & read, f"{stage} overwrites {sorted(globals_ & read)}"
    assert release["spec"]["onExit"] == "finish-release"
    # The message the workflow ends with is the handler's log tail (see the engine test below).
    assert finish["script"]["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("section", ["finetune", "evaluate", "serving"])
def test_release_refuses_a_spec_without_a_section_it_needs(section: str) -> None:
    spec = SPEC.model_copy(update={section: None})
    with pytest.raises(SpecError) as caught:
        get_pipeline("release").build(spec)
    assert f"needs the {section} section" in str(caught.value)
    assert "releases/tiny.yaml" in str(caught.value)
    assert "release" not in pipeline_templates(spec)


def test_without_images_build_images_is_left_out() -> None:
    tasks = dag_tasks(render("release", SPEC.model_copy(update={"images": None})))
    assert "build-images" not in tasks
    assert tasks["finetune"]["depends"] == "fetch-weights"
    assert "build-images" not in tasks["judge-release"]["depends"]


def _rendered(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"arguments": {"parameters": parameters}}}


def _parameter(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value, "description": f"the {name}"}


def test_release_parameters_merge_what_stages_agree_on() -> None:
    rendered = {
        "fetch-weights": _rendered(
            [_parameter("image", "steps:1"), _parameter("source", "s3://a/b")]
        ),
        "evaluate": _rendered(
            [_parameter("image", "steps:1"), _parameter("candidate", "s3://c/d")]
        ),
        "deploy": _rendered([_parameter("candidate", "s3://other/weights")]),
    }
    merged = {p.name: p.value for p in release_parameters(SPEC, rendered)}
    # Each once; `candidate` is passed from stage to stage, so it is none of the release's.
    assert merged == {
        "image": "steps:1",
        "source": "s3://a/b",
        "tag": "",
        "commit": "",
        "records": SPEC.records.uri,
        "repo": "",
        "revision": "HEAD",
    }


def test_two_stages_giving_a_parameter_different_values_is_refused() -> None:
    rendered = {
        "fetch-weights": _rendered([_parameter("image", "steps:1")]),
        "finetune": _rendered([_parameter("image", "steps:2")]),
    }
    with pytest.raises(SpecError) as caught:
        release_parameters(SPEC, rendered)
    assert str(caught.value) == (
        "parameter image: fetch-weights gives 'steps:1', finetune gives 'steps:2'; "
        "a release needs one value"
    )


def test_release_loads_in_the_local_engine_with_the_specs_templates(
    release: dict[str, Any], templates: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    store = LocalTemplates(tmp_path)
    for name in referenced_templates(release):
        store.apply(templates[name])
    run = Run(release, RunOptions(root=tmp_path, templates=store))  # constructed, not executed
    assert run.spec["onExit"] == "finish-release"
    assert run.parameters["records"] == SPEC.records.uri
    assert run.phase == "Pending" and run.nodes == {}


def test_release_names_the_missing_workflow_templates(
    release: dict[str, Any], templates: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    store = LocalTemplates(tmp_path)
    with pytest.raises(RunError) as caught:
        Run(release, RunOptions(root=tmp_path, templates=store))
    for stage in STAGES:
        assert f"no WorkflowTemplate {stage!r} in namespace 'llmflow'" in str(caught.value)
    assert "llmflow templates apply --local" in str(caught.value)

    for name in set(STAGES) - {"deploy"}:
        store.apply(templates[name])
    with pytest.raises(RunError) as caught:
        Run(release, RunOptions(root=tmp_path, templates=store))
    assert str(caught.value).startswith(
        "task 'deploy': templateRef deploy/main: no WorkflowTemplate 'deploy' in namespace "
        "'llmflow'"
    )
    assert "'finetune'" not in str(caught.value)


# --- judge-release --------------------------------------------------------------------------


def _stages(**phases: str) -> str:
    order = ("load-release", *STAGES)
    return json.dumps({name: phases.get(name.replace("-", "_"), "Succeeded") for name in order})


def test_judge_production() -> None:
    judged = judge_release(stages=_stages(load_release="Skipped"), passed="true", decision="ok")
    assert (judged.outcome, judged.reason) == ("production", "the candidate passed every stage")


def test_judge_gate_failed_gives_the_decision() -> None:
    decision = "tiny_instructions_mc/acc: -0.08 below the margin 0.05"
    judged = judge_release(stages=_stages(deploy="Skipped"), passed="false", decision=decision)
    assert judged.outcome == "gate-failed"
    assert judged.reason == f"the evaluation gate failed: {decision}"


@pytest.mark.parametrize("phase", ["Failed", "Error"])
def test_judge_rolled_back(phase: str) -> None:
    judged = judge_release(stages=_stages(deploy=phase), passed="true")
    assert judged.outcome == "rolled-back"
    assert "rolled back" in judged.reason and "stable serves all traffic" in judged.reason


def test_judge_failed_names_the_first_failed_stage() -> None:
    stages = _stages(
        load_release="Skipped", finetune="Failed", evaluate="Omitted", deploy="Omitted"
    )
    judged = judge_release(stages=stages, passed="")
    assert (judged.outcome, judged.reason) == ("failed", "finetune failed; nothing was deployed")


def test_judge_does_not_count_a_skipped_load_release_as_failed() -> None:
    after = {s.replace("-", "_"): "Omitted" for s in STAGES[1:]}
    stages = _stages(load_release="Skipped", fetch_weights="Error", **after)
    judged = judge_release(stages=stages, passed="")
    assert (judged.outcome, judged.reason) == (
        "failed",
        "fetch-weights failed; nothing was deployed",
    )
    every = {s.replace("-", "_"): "Omitted" for s in STAGES}
    failed_tag = judge_release(stages=_stages(load_release="Failed", **every), passed="")
    assert failed_tag.reason == "load-release failed; nothing was deployed"


# --- finish-release -------------------------------------------------------------------------

FAILURES = json.dumps(
    [
        {"displayName": "train", "message": "main: Error (exit code 1)", "phase": "Failed"},
        {"displayName": "finetune", "message": "child failed", "phase": "Failed"},
    ]
)


def test_finish_passes_on_production() -> None:
    finish_release(outcome="production", reason="fine", status="Succeeded", failures="null")


@pytest.mark.parametrize(
    ("outcome", "reason", "message"),
    [
        ("gate-failed", "the evaluation gate failed: acc", "release gate-failed: the evaluation"),
        ("rolled-back", "the canary did not pass", "release rolled-back: the canary did not pass"),
        (
            "failed",
            "finetune failed; nothing was deployed",
            "release failed: finetune failed; nothing was deployed: "
            "train: main: Error (exit code 1)",
        ),
    ],
)
def test_finish_fails_with_the_reason(outcome: str, reason: str, message: str) -> None:
    with pytest.raises(StepError) as caught:
        finish_release(outcome=outcome, reason=reason, status="Succeeded", failures=FAILURES)
    assert str(caught.value).startswith(message)


def test_finish_says_the_release_did_not_finish_without_an_outcome() -> None:
    with pytest.raises(StepError) as caught:
        finish_release(
            outcome="{{workflow.outputs.parameters.outcome}}",
            reason="{{workflow.outputs.parameters.reason}}",
            status="Failed",
            failures=FAILURES,
        )
    assert str(caught.value) == (
        "the release did not finish (Failed): train: main: Error (exit code 1)"
    )
    with pytest.raises(StepError, match=r"did not finish \(Error\): it was stopped"):
        finish_release(status="Error", failures="null")


# --- load-release ---------------------------------------------------------------------------

MODEL = SPEC.model.name


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        [
            *("git", "-c", "user.name=t", "-c", "user.email=t@example.com"),
            *("-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false", *args),
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _tagged(tmp_path: Path, spec_name: str, tag: str, edit: tuple[str, str] | None = None) -> dict:
    """A repository with the tiny spec at `releases/<spec_name>` tagged, and its checkout."""
    repo = tmp_path / "repo"
    (repo / "releases").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    text = SPEC_PATH.read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    (repo / "releases" / spec_name).write_text(text)
    _git(repo, "add", "releases")
    _git(repo, "commit", "-q", "-m", "release spec")
    _git(repo, "tag", tag)
    checkout = tmp_path / "checkout"  # what Argo's git artifact checks out at the commit
    _git(tmp_path, "clone", "-q", "--branch", tag, str(repo), str(checkout))
    commit = _git(repo, "rev-parse", f"{tag}^{{commit}}")
    return {"repo": str(repo), "commit": commit, "tag": tag, "source": str(checkout)}


@pytest.fixture(scope="module")
def rendered_digest(release: dict[str, Any]) -> str:
    """The spec digest the release template was rendered with (load-release's argument)."""
    arguments = dag_tasks(release)["load-release"]["arguments"]["parameters"]
    [digest] = [p["value"] for p in arguments if p["name"] == "spec-digest"]
    assert digest.startswith("sha256:")
    return str(digest)


def _load(tagged: dict[str, str], digest: str, model: str = MODEL) -> Any:
    return load_release(
        tag=tagged["tag"],
        commit=tagged["commit"],
        repo=tagged["repo"],
        model_name=model,
        digest=digest,
        source=tagged["source"],
    )


@pytest.mark.parametrize("spec_name", [f"{MODEL}.yaml", "tiny.yaml"])
def test_load_release_checks_the_tagged_spec(
    spec_name: str, tmp_path: Path, rendered_digest: str
) -> None:
    tagged = _tagged(tmp_path, spec_name, f"release/{MODEL}/1.2.0")
    loaded = _load(tagged, rendered_digest)
    assert json.loads(loaded.git) == {
        "repo": tagged["repo"],
        "commit": tagged["commit"],
        "tag": f"release/{MODEL}/1.2.0",
    }
    assert re.fullmatch("[0-9a-f]{40}", tagged["commit"])
    assert loaded.version == "1.2.0"


def test_load_release_refuses_a_tag_of_another_model(tmp_path: Path, rendered_digest: str) -> None:
    tagged = _tagged(tmp_path, f"{MODEL}.yaml", "release/other-llama/1.2.0")
    with pytest.raises(SourceError) as caught:
        _load(tagged, rendered_digest)
    assert str(caught.value) == (
        f"tag 'release/other-llama/1.2.0' releases 'other-llama', but this is the release "
        f"template of '{MODEL}': submit the template of other-llama, or fix the tag"
    )


def test_load_release_refuses_a_malformed_tag(tmp_path: Path, rendered_digest: str) -> None:
    tagged = _tagged(tmp_path, f"{MODEL}.yaml", f"release/{MODEL}/v1.2.0")
    with pytest.raises(SourceError) as caught:
        _load(tagged, rendered_digest)
    message = str(caught.value)
    assert "'v1.2.0' is not a semantic version" in message
    assert f"release/{MODEL}/1.2.0" in message  # the fix: the tag without its 'v'


def test_load_release_refuses_a_spec_that_is_not_the_templates(
    tmp_path: Path, rendered_digest: str
) -> None:
    tagged = _tagged(
        tmp_path, f"{MODEL}.yaml", f"release/{MODEL}/1.2.1", edit=("epochs: 20", "epochs: 21")
    )
    with pytest.raises(SourceError) as caught:
        _load(tagged, rendered_digest)
    message = str(caught.value)
    assert message.startswith(
        f"releases/{MODEL}.yaml at {tagged['commit'][:12]} (release/{MODEL}/1.2.1) is not the "
        "spec the release template was rendered from"
    )
    assert rendered_digest[:19] in message
    assert f"`llmflow templates apply -f releases/{MODEL}.yaml` at that commit" in message


def test_a_digest_mismatch_names_the_spec_file_that_was_checked(
    tmp_path: Path, rendered_digest: str
) -> None:
    tagged = _tagged(
        tmp_path, "tiny.yaml", f"release/{MODEL}/1.2.1", edit=("epochs: 20", "epochs: 21")
    )
    with pytest.raises(SourceError) as caught:
        _load(tagged, rendered_digest)
    assert "llmflow templates apply -f releases/tiny.yaml" in str(caught.value)


def test_load_release_refuses_a_checkout_without_the_spec(
    tmp_path: Path, rendered_digest: str
) -> None:
    tagged = _tagged(tmp_path, f"{MODEL}.yaml", f"release/{MODEL}/1.2.0")
    shutil.rmtree(Path(tagged["source"]) / "releases")
    (Path(tagged["source"]) / "releases").mkdir()
    with pytest.raises(SourceError) as caught:
        _load(tagged, rendered_digest)
    assert f"releases/ has no release specs; add releases/{MODEL}.yaml" in str(caught.value)


# --- the exit handler in the local engine ---------------------------------------------------

_WRITE_OUTCOME = (
    "import pathlib, sys; p = pathlib.Path('/tmp/out'); p.mkdir(parents=True, exist_ok=True); "
    "(p / 'outcome').write_text(sys.argv[1])"
)

_FINISH = """\
import sys
outcome = "{{inputs.parameters.outcome}}"
if outcome.startswith("{" + "{"):
    print("the release did not finish")
    sys.exit(1)
if outcome != "production":
    print(f"release {outcome}: the evaluation gate failed")
    sys.exit(1)
print("release reached production")
"""


def release_shaped(name: str, outcome: str, fail: bool = False) -> dict[str, Any]:
    """A DAG whose one step names the outcome (`globalName`), and an exit handler that reads it."""
    command = ["python", "-c", _WRITE_OUTCOME, "{{inputs.parameters.outcome}}"]
    judge = {
        "name": "judge",
        "inputs": {"parameters": [{"name": "outcome"}]},
        "container": {
            "image": "python:3.11-slim",
            "command": ["python", "-c", "import sys; sys.exit(3)"] if fail else command,
        },
        "outputs": {
            "parameters": [
                {
                    "name": "outcome",
                    "globalName": "outcome",
                    "valueFrom": {"path": "/tmp/out/outcome"},
                }
            ]
        },
    }
    finish = {
        "name": "finish",
        "inputs": {
            "parameters": [
                {"name": "outcome", "default": "{{workflow.outputs.parameters.outcome}}"}
            ]
        },
        "script": {
            "image": "python:3.11-slim",
            "command": ["python"],
            "source": _FINISH,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        },
    }
    task = {
        "name": "judge",
        "template": "judge",
        "arguments": {"parameters": [{"name": "outcome", "value": outcome}]},
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "onExit": "finish",
            "templates": [{"name": "main", "dag": {"tasks": [task]}}, judge, finish],
        },
    }


def _executed(manifest: dict[str, Any], root: Path) -> Run:
    run = Run(manifest, RunOptions(root=root))
    run.execute()
    return run


def _handler(run: Run) -> Any:
    return next(n for n in run.nodes.values() if n.name == f"{run.name}.onExit")


def test_a_failing_exit_handler_fails_a_succeeded_dag_with_its_reason(tmp_path: Path) -> None:
    run = _executed(release_shaped("gated", "gate-failed"), tmp_path)
    entry = next(n for n in run.nodes.values() if n.name == run.name)
    assert entry.phase == "Succeeded"  # the DAG itself ended well
    assert run.status()["outputs"]["parameters"] == [{"name": "outcome", "value": "gate-failed"}]
    handler = _handler(run)
    assert handler.inputs["parameters"] == [{"name": "outcome", "value": "gate-failed"}]
    assert handler.phase == "Failed"
    assert run.phase == "Failed"
    assert "release gate-failed: the evaluation gate failed" in run.message


def test_the_exit_handler_passes_a_production_release(tmp_path: Path) -> None:
    run = _executed(release_shaped("shipped", "production"), tmp_path)
    assert _handler(run).phase == "Succeeded"
    assert _handler(run).outputs["result"] == "release reached production"
    assert run.phase == "Succeeded" and run.message == ""


def test_an_outcome_never_set_reaches_the_exit_handler_unresolved(tmp_path: Path) -> None:
    run = _executed(release_shaped("broken", "production", fail=True), tmp_path)
    assert run.phase == "Failed"
    handler = _handler(run)
    assert handler.phase == "Failed", handler.message
    assert "the release did not finish" in handler.message
    # What finish-release tells from an outcome (steps/release.py `_UNRESOLVED`).
    assert handler.inputs["parameters"] == [
        {"name": "outcome", "value": "{{workflow.outputs.parameters.outcome}}"}
    ]
    # The workflow keeps the message of what failed first, as Argo does.
    assert "the release did not finish" not in run.message


def test_finish_records_a_release_that_ended_early(tmp_path: Path) -> None:
    from steps.releases import RecordStore

    records = f"file://{tmp_path / 'records'}"
    with pytest.raises(StepError, match="the release did not finish"):
        finish_release(
            status="Failed",
            failures=FAILURES,
            records=records,
            model_name="tiny-llama",
            workflow_name="release-tiny-llama-ab12c",
            started_at="2026-11-29T05:00:00Z",
        )
    [record] = RecordStore.open(records).list("tiny-llama")
    assert record.outcome == "failed" and "train: main: Error (exit code 1)" in record.reason
    assert record.workflow is not None and record.workflow.name == "release-tiny-llama-ab12c"
    assert RecordStore.open(records).alias("tiny-llama", "production") is None
