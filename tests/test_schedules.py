"""Schedules: the spec's `schedules:` section, its CronWorkflows, and one run of them now."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.cli import main
from workflows.exceptions import SpecError
from workflows.schedules import CRON_LABEL, SCHEDULED_TIME, cron_workflows, workflow_from_cron
from workflows.spec import ReleaseSpec, load_spec, parse_spec
from workflows.templates import pipeline_templates
from workflows.validation import validate_documents

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "releases" / "tiny.yaml"
SPEC = load_spec(SPEC_PATH)


def with_schedules(*schedules: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {"name": "tiny-llama", "source": "s3://models/tiny-llama"},
        "schedules": list(schedules),
    }


def schedule(**fields: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "pipeline": "evaluate",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        **fields,
    }


def tiny_with(*schedules: dict[str, Any]) -> ReleaseSpec:
    """The tiny spec with these schedules instead of its own."""
    return SPEC.model_copy(update={"schedules": parse_spec(with_schedules(*schedules)).schedules})


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    return pipeline_templates(SPEC)


@pytest.fixture(scope="module")
def nightly(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [cron] = cron_workflows(SPEC, templates)
    return cron


# --- ScheduleSpec ---------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 0-6 1,15 * MON-FRI", "@daily", "@hourly"])
def test_cron_expressions_are_accepted(cron: str) -> None:
    assert parse_spec(with_schedules(schedule(cron=cron))).schedules[0].cron == cron


@pytest.mark.parametrize("cron", ["0 2 * *", "0 2 * * * *", "@nightly", "every day", ""])
def test_a_bad_cron_expression_is_refused_with_the_form(cron: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_schedules(schedule(cron=cron)))
    message = str(caught.value)
    assert f"schedules.0.cron = {cron!r}" in message
    assert "must be five cron fields (minute hour day-of-month month day-of-week)" in message
    assert "'0 2 * * *' for 02:00 every day" in message and "@daily" in message


def test_a_bad_timezone_is_refused_with_a_suggestion() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_schedules(schedule(timezone="berlin")))
    assert str(caught.value).endswith(
        "schedules.0.timezone = 'berlin': 'berlin' is not an IANA time zone; "
        "did you mean Europe/Berlin?"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(with_schedules(schedule(timezone="Mars/Olympus")))
    assert "'Mars/Olympus' is not an IANA time zone (e.g. UTC, Europe/Berlin)" in str(caught.value)


def test_the_timezone_is_required() -> None:
    fields = schedule()
    del fields["timezone"]
    with pytest.raises(SpecError, match=r"schedules\.0\.timezone: required field is missing"):
        parse_spec(with_schedules(fields))


def test_schedule_names_must_differ() -> None:
    spec = with_schedules(schedule(), schedule(cron="@hourly"), schedule(name="weekly"))
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert "schedule names must differ; nightly is used twice" in str(caught.value)


def test_a_schedule_name_is_a_kubernetes_name() -> None:
    with pytest.raises(SpecError, match=r"schedules\.0\.name = 'Nightly_Eval'"):
        parse_spec(with_schedules(schedule(name="Nightly_Eval")))


def test_yaml_bools_and_numbers_become_parameter_strings() -> None:
    text = "fail-on-gate: true\nstrict: False\nlimit: 10\ncandidate: s3://m/x\n"
    parameters = yaml.safe_load(text)
    assert parameters["fail-on-gate"] is True  # what YAML gives the validator
    [parsed] = parse_spec(with_schedules(schedule(parameters=parameters))).schedules
    assert parsed.parameters == {
        "fail-on-gate": "true",
        "strict": "false",
        "limit": "10",
        "candidate": "s3://m/x",
    }


# --- CronWorkflows --------------------------------------------------------------------------


def test_nightly_eval_passes_strict_validation(nightly: dict[str, Any], registry) -> None:
    assert registry.validator("argoproj.io/v1alpha1", "CronWorkflow") is not None
    assert validate_documents([("cron-nightly-eval.yaml", nightly)], registry) == []
    misspelt = copy.deepcopy(nightly)
    misspelt["spec"]["concurencyPolicy"] = misspelt["spec"].pop("concurrencyPolicy")
    problems = validate_documents([("cron", misspelt)], registry)
    assert [p.path for p in problems] == ["spec.concurencyPolicy"]


def test_nightly_eval_runs_the_evaluate_template_with_its_overrides(
    nightly: dict[str, Any],
) -> None:
    assert nightly["kind"] == "CronWorkflow"
    assert nightly["metadata"]["name"] == "nightly-eval"
    assert nightly["metadata"]["namespace"] == SPEC.namespace
    spec = nightly["spec"]
    assert spec["schedules"] == ["0 2 * * *"]
    assert spec["timezone"] == "UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["suspend"] is False
    assert spec["workflowSpec"] == {
        "workflowTemplateRef": {"name": "evaluate"},
        "arguments": {
            "parameters": [
                {"name": "candidate", "value": "s3://llmflow-models/tiny-llama-ft/final"},
                {"name": "fail-on-gate", "value": "true"},
            ]
        },
    }
    labels = spec["workflowMetadata"]["labels"]
    assert labels["llmflow.io/schedule"] == "nightly-eval"
    assert labels["llmflow.io/pipeline"] == "evaluate"


def test_a_schedule_of_an_unknown_pipeline_is_a_spec_error(
    templates: dict[str, dict[str, Any]],
) -> None:
    spec = tiny_with(schedule(pipeline="nope"))
    with pytest.raises(SpecError) as caught:
        cron_workflows(spec, templates)
    message = str(caught.value)
    assert message.startswith("schedules[0] (nightly).pipeline = 'nope': no such pipeline")
    assert "evaluate" in message and "fetch-weights" in message


def test_a_schedule_with_an_unknown_parameter_is_a_spec_error(
    templates: dict[str, dict[str, Any]],
) -> None:
    spec = tiny_with(schedule(parameters={"candiate": "s3://m/x"}))
    with pytest.raises(SpecError) as caught:
        cron_workflows(spec, templates)
    message = str(caught.value)
    assert message.startswith(
        "schedules[0] (nightly).parameters: parameter 'candiate': the evaluate template has no "
        "such parameter"
    )
    assert "candidate" in message.split("its parameters:")[1]


def test_a_parameter_outside_its_enum_is_a_spec_error(
    templates: dict[str, dict[str, Any]],
) -> None:
    spec = tiny_with(schedule(parameters={"verify": "sometimes"}))
    with pytest.raises(SpecError, match=r"^schedules\[0\] \(nightly\)\.parameters: parameter "):
        cron_workflows(spec, templates)


# --- one run now, as `argo submit --from cronwf/NAME` ---------------------------------------


def test_workflow_from_cron_is_what_argo_makes(nightly: dict[str, Any]) -> None:
    now = datetime(2024, 5, 6, 2, 0, 30, tzinfo=UTC)
    workflow = workflow_from_cron(nightly, now)
    # common.ConvertCronWorkflowToWorkflow: generateName `<name>-`, the cron label, then the
    # workflowMetadata labels, the scheduled-time annotation (RFC 3339), the workflowSpec.
    assert workflow["apiVersion"] == "argoproj.io/v1alpha1" and workflow["kind"] == "Workflow"
    assert workflow["metadata"] == {
        "generateName": "nightly-eval-",
        "namespace": "llmflow",
        "labels": {CRON_LABEL: "nightly-eval", **nightly["spec"]["workflowMetadata"]["labels"]},
        "annotations": {SCHEDULED_TIME: "2024-05-06T02:00:30Z"},
    }
    assert CRON_LABEL == "workflows.argoproj.io/cron-workflow"
    assert SCHEDULED_TIME == "workflows.argoproj.io/scheduled-time"
    assert workflow["spec"] == nightly["spec"]["workflowSpec"]
    workflow["spec"]["arguments"]["parameters"].clear()  # a copy: the CronWorkflow keeps its own
    assert nightly["spec"]["workflowSpec"]["arguments"]["parameters"]


def test_workflow_metadata_labels_win_over_the_cron_label() -> None:
    cron = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "c"},
        "spec": {
            "schedules": ["@daily"],
            "workflowMetadata": {"labels": {CRON_LABEL: "other", "team": "ml"}},
            "workflowSpec": {"entrypoint": "main"},
        },
    }
    workflow = workflow_from_cron(cron)
    assert workflow["metadata"]["labels"] == {CRON_LABEL: "other", "team": "ml"}
    assert "namespace" not in workflow["metadata"]
    stamp = workflow["metadata"]["annotations"][SCHEDULED_TIME]
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")  # RFC 3339 in UTC


def test_workflow_from_cron_carries_annotations_and_the_instance_id() -> None:
    instance = "workflows.argoproj.io/controller-instanceid"
    cron = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "c", "labels": {instance: "ml"}},
        "spec": {
            "schedules": ["@daily"],
            "workflowMetadata": {"annotations": {"owner": "ml-team"}},
            "workflowSpec": {"entrypoint": "main"},
        },
    }
    metadata = workflow_from_cron(cron)["metadata"]
    assert metadata["annotations"]["owner"] == "ml-team"
    assert metadata["labels"][instance] == "ml"


# --- the command line -----------------------------------------------------------------------


def test_run_from_an_unknown_schedule_names_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["run", "--from", "cronwf/nope", "-f", str(SPEC_PATH), "--root", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert f"--from cronwf/nope: {SPEC_PATH} has no schedule 'nope'; its: nightly-eval" in (
        result.output
    )
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("source", ["bad", "cronwf/", "pod/x"])
def test_run_from_explains_the_form(source: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "--from", source, "-f", str(SPEC_PATH), "--root", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert f"--from {source!r}: give cronwf/NAME (a schedule of the spec) or " in result.output
    assert "workflowtemplate/NAME (a pipeline)" in result.output


def test_run_from_needs_the_spec(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "--from", "cronwf/nightly-eval", "--root", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "needs the release spec it comes from: -f SPEC" in result.output


def test_templates_render_includes_the_cron_workflow() -> None:
    result = CliRunner().invoke(main, ["templates", "render", "-f", str(SPEC_PATH)])
    assert result.exit_code == 0, result.output
    documents = [d for d in yaml.safe_load_all(result.output) if d]
    crons = [d for d in documents if d["kind"] == "CronWorkflow"]
    assert [c["metadata"]["name"] for c in crons] == ["nightly-eval"]
    assert crons[0]["spec"]["workflowSpec"]["workflowTemplateRef"] == {"name": "evaluate"}
    kinds = {(d["kind"], d["metadata"].get("name")) for d in documents}
    assert ("WorkflowTemplate", "evaluate") in kinds
