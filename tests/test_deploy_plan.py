"""The deploy pipeline without servers: the rollout plan, versions, and the rendered DAG."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.deploy import plan_rollout, version_label
from steps.errors import StepError
from workflows.local.expressions import evaluate_condition
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import validate_documents

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "ab" * 32


def test_a_version_is_the_weights_and_the_server_configuration() -> None:
    assert version_label(DIGEST, "{}") == version_label(DIGEST, "{}")
    assert len(version_label(DIGEST)) == 12
    assert version_label(DIGEST, '{"vllm_args": ["--max-num-seqs", "1"]}') != version_label(
        DIGEST, "{}"
    )
    assert version_label("sha256:" + "cd" * 32) != version_label(DIGEST)
    with pytest.raises(StepError, match="is not sha256:<hex>"):
        version_label("latest")


@pytest.mark.parametrize(
    ("status", "stable", "mode"),
    [("Failed", "", "first"), ("Succeeded", "other", "canary"), ("Succeeded", None, "current")],
)
def test_the_plan_follows_what_is_stable(status: str, stable: str | None, mode: str) -> None:
    version = version_label(DIGEST, "cfg")
    plan = plan_rollout(
        digest=DIGEST, stable_status=status, stable_version=stable or version, config="cfg"
    )
    assert (plan.mode, plan.version) == (mode, version)


def test_a_failure_condition_fails_on_any_term_a_success_condition_needs_all() -> None:
    status = {"status": {"readyReplicas": 1, "conditions": [{"reason": "Stuck"}]}}
    condition = "status.readyReplicas == 2, status.conditions.0.reason == Stuck"
    assert evaluate_condition(condition, status, any_term=True)
    assert not evaluate_condition(condition, status)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return render("deploy", load_spec(ROOT / "releases" / "tiny.yaml"))


def test_the_pipeline_renders_to_a_valid_workflow(workflow: dict, registry) -> None:
    problems = validate_documents([("deploy", workflow)], registry)
    assert not problems, problems


def test_the_canary_is_unrolled_into_visible_stages(workflow: dict) -> None:
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert [n for n in tasks if n.startswith("analyse-")] == [
        "analyse-shadow",  # releases/tiny.yaml shadows first (tests/test_shadow.py)
        "analyse-10",
        "analyse-50",
        "analyse-100",
    ]
    # Promotion hangs on the last stage's success, rollback on any failure before it.
    assert tasks["promote"]["depends"] == "analyse-100.Succeeded"
    rollback_on = tasks["rollback"]["depends"].split(" || ")
    for task in ("deploy-canary", "stage-10", "analyse-10", "stage-100", "analyse-100"):
        assert {f"{task}.Failed", f"{task}.Errored"} <= set(rollback_on), task
    assert not any(d.startswith(("promote", "route-promoted")) for d in rollback_on)
    assert tasks["start-shadow"]["depends"].startswith("deploy-canary.Succeeded")
    assert tasks["stage-10"]["depends"] == "analyse-shadow.Succeeded"
    route = templates["set-weights-10"]["resource"]["manifest"]
    assert "weight: 90" in route and "weight: 10" in route
    # Stopped or failed midway: the exit handler puts stable back; one rollout per model.
    assert workflow["spec"]["onExit"] == "restore-stable"
    # The mutex is on `main` (a release that runs it holds it too) and on the exit handler.
    mutex = {"mutexes": [{"name": "deploy-tiny-llama"}]}
    assert "synchronization" not in workflow["spec"]
    assert templates["main"]["synchronization"] == mutex
    assert templates["restore-stable"]["synchronization"] == mutex
    deploy = templates["deploy-canary"]["resource"]
    assert deploy["successCondition"].startswith("status.replicas == 1")
    assert "ProgressDeadlineExceeded" in deploy["failureCondition"]


def test_a_failed_resource_says_why_from_its_conditions() -> None:
    from workflows.local.leaves import _failed_condition

    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "exit 1"}]}}
    assert _failed_condition(job) == "exit 1"
    stuck = {
        "status": {
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "has minimum availability",
                },
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "pod crashed 3 times (CrashLoopBackOff)",
                },
            ]
        }
    }
    assert _failed_condition(stuck) == (
        "Progressing ProgressDeadlineExceeded: pod crashed 3 times (CrashLoopBackOff)"
    )
    assert _failed_condition({"status": {}}) == ""
