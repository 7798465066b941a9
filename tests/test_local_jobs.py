"""Training jobs on the local platform: TrainJob as Trainer v2 runs it, and owner references."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.cli import main
from workflows.exceptions import RunError
from workflows.local.kinds import trainjob
from workflows.local.platform import LocalPlatform

#: A node that writes the env the torch plugin gives it, then exits with CODE.
REPORT = (
    "import json, os, sys; "
    "rank = os.environ['PET_NODE_RANK']; "
    "keys = [k for k in os.environ if k.startswith(('PET_', 'JOB_')) or k == 'S3_BUCKET']; "
    "open(sys.argv[1] + '/node-' + rank + '.json', 'w').write("
    "json.dumps({k: os.environ[k] for k in keys})); "
    "sys.exit(int(sys.argv[2]))"
)


def train_job(name: str, command: list[str], **trainer: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"command": command, **trainer},
        },
    }


def wait_until_finished(platform: LocalPlatform, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = platform.get("TrainJob", "ml", name)
        assert obj is not None
        if any(c["status"] == "True" for c in obj["status"].get("conditions", [])):
            return obj
        time.sleep(0.1)
    raise AssertionError(f"TrainJob {name} did not finish: {obj}")


@pytest.fixture
def platform(tmp_path: Path):
    platform = LocalPlatform(tmp_path / "home", "ml", env={"PATH": "/usr/bin:/bin"})
    yield platform
    platform.close()


def test_nodes_get_the_torch_plugins_env_and_the_job_completes(platform, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job = train_job(
        "tj",
        ["python", "-c", REPORT, str(out), "0"],
        numNodes=3,
        env=[{"name": "S3_BUCKET", "value": "models"}],
        resourcesPerNode={"requests": {"cpu": "1500m"}},  # numProcPerNode auto: 2 CPUs
    )
    created = platform.act("create", job)
    assert created is not None and "conditions" not in created["status"]  # none while running
    done = wait_until_finished(platform, "tj")
    (complete,) = done["status"]["conditions"]
    assert (complete["type"], complete["reason"], complete["message"]) == (
        "Complete",
        "AllJobsCompleted",
        "jobset completed successfully",
    )
    assert done["status"]["jobsStatus"] == [
        {"name": "node", "ready": 0, "succeeded": 1, "failed": 0, "active": 0, "suspended": 0}
    ]
    envs = [json.loads((out / f"node-{rank}.json").read_text()) for rank in range(3)]
    assert [e["PET_NODE_RANK"] for e in envs] == ["0", "1", "2"]
    assert [e["JOB_COMPLETION_INDEX"] for e in envs] == ["0", "1", "2"]
    assert {(e["PET_NNODES"], e["PET_NPROC_PER_NODE"], e["S3_BUCKET"]) for e in envs} == {
        ("3", "2", "models")
    }
    assert len({(e["PET_MASTER_ADDR"], e["PET_MASTER_PORT"]) for e in envs}) == 1
    stored = json.loads((platform.root / "ml" / "TrainJob" / "tj" / "object.json").read_text())
    assert stored["status"]["conditions"][0]["type"] == "Complete"


def test_a_failing_node_restarts_in_place_until_the_jobs_backoff_limit(platform, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job = train_job("bad", ["python", "-c", REPORT, str(out), "3"], numNodes=1)
    platform.act("create", job)
    done = wait_until_finished(platform, "bad")
    (failed,) = done["status"]["conditions"]
    assert (failed["type"], failed["reason"]) == ("Failed", "FailedJobs")
    assert failed["message"].startswith(
        "jobset failed due to one or more job failures (first failed job: bad-node-0)"
    )
    assert "exited with code 3, the job's pods' failure 6 of 6" in failed["message"]
    assert set(failed) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert done["status"]["jobsStatus"][0]["failed"] == 1
    log = (platform.root / "ml" / "TrainJob" / "bad" / "node-0.log").read_text()
    assert log.count("start node-0") == trainjob.JOB_BACKOFF_LIMIT


def test_the_active_deadline_fails_the_job_and_ends_its_nodes(platform) -> None:
    job = train_job("slow", ["python", "-c", "import time; time.sleep(60)"], numNodes=2)
    job["spec"]["activeDeadlineSeconds"] = 1
    platform.act("create", job)
    done = wait_until_finished(platform, "slow", timeout=30)
    (failed,) = done["status"]["conditions"]
    assert (failed["reason"], failed["message"]) == (
        "DeadlineExceeded",
        "TrainJob exceeded its active deadline",
    )
    # The JobSet is deleted; jobsStatus stays as last reported, so only the condition says it.
    assert done["status"]["jobsStatus"][0]["active"] == 1
    assert done["status"]["jobsStatus"][0]["failed"] == 0
    folder = platform.root / "ml" / "TrainJob" / "slow"
    for pid_file in folder.glob("node-*.pid"):
        assert not Path(f"/proc/{pid_file.read_text()}").exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"runtimeRef": {"name": "mpi-distributed"}}, "cannot be run locally"),
        (
            {"runtimeRef": {"name": "torch-distributed", "kind": "TrainingRuntime"}},
            "emulates only the ClusterTrainingRuntime 'torch-distributed'",
        ),
        (
            {"trainer": {"command": ["x"], "env": [{"name": "PET_NNODES", "value": "9"}]}},
            "reserved",
        ),
        ({"trainer": {"command": ["x"], "numNodes": 0}}, "numNodes = 0"),
        ({"trainer": {"image": "i"}}, "spec.trainer.command is required locally"),
    ],
)
def test_what_cannot_be_emulated_is_a_clear_error(platform, change, said) -> None:
    job = train_job("tj", ["python", "-c", "pass"])
    job["spec"].update(change)
    with pytest.raises(RunError, match=said):
        platform.act("create", job)
    assert platform.get("TrainJob", "ml", "tj") is None


def test_deleting_a_run_deletes_what_it_owns_and_nothing_else(tmp_path) -> None:
    def config_map(name: str, owned: bool) -> dict[str, Any]:
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        resource = {"action": "create", "manifest": yaml.safe_dump(manifest)}
        if owned:
            resource["setOwnerReference"] = True
        return {"name": name, "resource": resource}

    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "owner", "namespace": "ml"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [[{"name": n, "template": n} for n in ("owned", "kept")]],
                },
                config_map("owned", owned=True),
                config_map("kept", owned=False),
            ],
        },
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    root = tmp_path / "root"
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--file", str(path), "--root", str(root)])
    assert result.exit_code == 0, result.output
    stored = root / "platform" / "ml" / "ConfigMap"
    owned = json.loads((stored / "owned.json").read_text())
    status = json.loads((root / "runs" / "owner" / "status.json").read_text())
    (reference,) = owned["metadata"]["ownerReferences"]
    assert reference == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "name": "owner",
        "uid": status["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    result = runner.invoke(main, ["runs", "--root", str(root), "delete", "owner"])
    assert result.exit_code == 0, result.output
    assert "ConfigMap/owned deleted (owned by owner)" in result.output
    assert not (stored / "owned.json").exists() and (stored / "kept.json").exists()
    assert not (root / "runs" / "owner").exists()


def test_a_running_run_is_not_deleted(tmp_path) -> None:
    run = tmp_path / "root" / "runs" / "busy"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"metadata": {"name": "busy"}, "phase": "Running"}))
    result = CliRunner().invoke(main, ["runs", "--root", str(tmp_path / "root"), "delete", "busy"])
    assert result.exit_code != 0 and "stop it first" in result.output
    assert run.exists()
