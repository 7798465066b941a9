"""The finetune pipeline: knobs and cleanup rendered; locally 2 replicas, TrainJob, faults, stop."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from steps.tiny_data import DATASET
from tests.processes import descendants, running
from workflows.local.engine import Run, RunOptions
from workflows.local.s3 import upload_folder
from workflows.render import render
from workflows.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "releases" / "tiny.yaml").read_text())


@pytest.fixture
def stores(s3, tiny_model):
    client = s3.client()
    for bucket in ("llmflow-models", "llmflow-data"):
        client.create_bucket(Bucket=bucket)
    upload_folder(client, tiny_model, "llmflow-models", "tiny-llama")
    client.upload_file(str(DATASET / "train.jsonl"), "llmflow-data", "tiny/train.jsonl")
    return s3


def spec(**finetune):
    data = copy.deepcopy(BASE)
    data["finetune"].update(finetune)
    return parse_spec(data)


def start(release, root: Path, s3) -> Run:
    return Run(render("finetune", release), RunOptions(root=root, env={**os.environ, **s3.env()}))


def by_template(run: Run) -> dict:
    return {n.template_name: n for n in run.nodes.values() if n.type in {"Pod", "Retry"}}


def outputs(node) -> dict[str, str]:
    return {p["name"]: p["value"] for p in node.outputs.get("parameters") or []}


def summary(s3, name: str) -> dict:
    key = f"tiny-llama-ft/{name}/summary.json"
    return json.loads(s3.client().get_object(Bucket="llmflow-models", Key=key)["Body"].read())


def test_two_replicas_fine_tune_and_the_checkpoint_generates(tmp_path, stores) -> None:
    run = start(spec(epochs=8), tmp_path, stores)  # 80 rows / (batch 8 x 2 replicas) x 8
    assert run.execute() == "Succeeded", run.message
    nodes = by_template(run)
    record = outputs(nodes["record-training"])
    assert record["checkpoint"] == f"s3://llmflow-models/tiny-llama-ft/{run.name}/final"
    assert int(record["steps"]) == 40 and float(record["final-loss"]) < 3.0
    result = summary(stores, run.name)
    assert result["world_size"] == 2 and result["losses"][-1] < 0.6 * result["losses"][0]
    job = tmp_path / "platform" / "llmflow" / "PyTorchJob" / f"{run.name}-train"
    assert {p.name for p in job.glob("*.log")} == {"Master-0.log", "Worker-0.log"}

    final = tmp_path / "final"
    client = stores.client()
    for obj in client.list_objects_v2(
        Bucket="llmflow-models", Prefix=f"tiny-llama-ft/{run.name}/final/"
    )["Contents"]:
        client.download_file(
            "llmflow-models", obj["Key"], str(final / Path(obj["Key"]).name)
        ) if final.mkdir(exist_ok=True) is None else None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    batch = tokenizer("Question: What is 1 plus 2?\nAnswer:", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 2


def test_a_killed_replica_resumes_from_its_checkpoint(tmp_path, stores) -> None:
    release = spec(batch_size=2, epochs=4, checkpoint_every=10)  # 80 steps
    baseline = start(release, tmp_path / "a", stores)
    assert baseline.execute() == "Succeeded", baseline.message
    expected = summary(stores, baseline.name)

    run = start(release, tmp_path / "b", stores)
    thread = threading.Thread(target=run.execute)
    thread.start()
    job = tmp_path / "b" / "platform" / "llmflow" / "PyTorchJob" / f"{run.name}-train"
    latest = f"tiny-llama-ft/{run.name}/checkpoints/latest"
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and not killed:
        listing = stores.client().list_objects_v2(Bucket="llmflow-models", Prefix=latest)
        if listing.get("KeyCount"):
            os.kill(int((job / "Worker-0.pid").read_text()), signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    thread.join(180)
    assert killed and run.phase == "Succeeded", run.message
    resumed = summary(stores, run.name)
    assert resumed["resumed_from_step"] > 0
    assert resumed["steps"] == expected["steps"] == 80
    assert resumed["final_loss"] == pytest.approx(expected["final_loss"], rel=0.02)
    log = (job / "Worker-0.log").read_text()
    assert "(restart 1)" in log


def test_a_failing_replica_fails_the_pipeline_and_registers_nothing(tmp_path, stores) -> None:
    release = spec(dataset="s3://llmflow-data/tiny/missing.jsonl", backoff_limit=1)
    run = start(release, tmp_path, stores)
    assert run.execute() == "Failed"
    nodes = by_template(run)
    train = nodes["train"]
    assert train.phase == "Failed"
    assert "BackoffLimitExceeded" not in train.message  # the reason is said in words
    assert "exited with code 1 after 1 restarts; last log lines:" in train.message
    assert "missing.jsonl" in train.message
    record = next(n for n in run.nodes.values() if n.display_name == "record-training")
    assert record.phase == "Omitted"
    listing = stores.client().list_objects_v2(
        Bucket="llmflow-models", Prefix=f"tiny-llama-ft/{run.name}/"
    )
    assert listing.get("KeyCount", 0) == 0


def test_a_bad_setting_fails_the_run_before_any_job_starts(tmp_path, stores) -> None:
    options = RunOptions(
        root=tmp_path, env={**os.environ, **stores.env()}, parameters={"epochs": "0"}
    )
    run = Run(render("finetune", spec()), options)
    assert run.execute() == "Failed"
    nodes = by_template(run)
    check = nodes["check-training"]
    assert check.phase == "Failed"
    assert "workflow parameter epochs = '0' (finetune.epochs in the release spec)" in check.message
    assert not (tmp_path / "platform" / "llmflow" / "PyTorchJob").exists()


def filled(workflow: dict, template: str, **parameters: str) -> dict:
    """A resource template's manifest as Argo fills it in: the workflow's parameters (defaults,
    then `parameters`) substituted, expressions evaluated, then parsed."""
    from workflows.local.expressions import substitute

    values = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
    values.update(parameters)
    scope = {f"workflow.parameters.{k}": str(v) for k, v in values.items()}
    scope |= {"workflow.name": "finetune-tiny-llama-abcde", "inputs.parameters.model-path": "/m"}
    train = next(t for t in workflow["spec"]["templates"] if t["name"] == template)
    return yaml.safe_load(substitute(train["resource"]["manifest"], scope, template))


def test_trainjob_launcher_renders_a_valid_trainjob(registry) -> None:
    from workflows.validation import validate_documents

    workflow = render("finetune", spec(launcher="trainjob", replicas=3, procs_per_replica=2))
    assert validate_documents([("finetune", workflow)], registry) == []
    job = filled(workflow, "train")
    assert validate_documents([("trainjob", job)], registry) == []
    assert job["kind"] == "TrainJob" and job["spec"]["trainer"]["numNodes"] == 3
    assert job["spec"]["trainer"]["numProcPerNode"] == 2
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    # The stock runtime's node pods get the model cache and the training service account.
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["containers"] == [
        {"name": "node", "volumeMounts": [{"mountPath": "/models", "name": "model-cache"}]}
    ]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "llmflow-model-cache"
    assert pod["serviceAccountName"] == "llmflow-training"
    assert filled(workflow, "train", **{"train-replicas": "1"})["spec"]["trainer"]["numNodes"] == 1


def test_the_knobs_are_parameters_the_job_reads(registry) -> None:
    from workflows.validation import validate_documents

    workflow = render("finetune", spec())
    params = {p["name"]: p for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["method"]["enum"] == ["full", "lora"] and params["method"]["value"] == "full"
    knobs = ("method", "epochs", "learning-rate", "train-batch-size", "lora-rank", "lora-alpha")
    for name in (*knobs, "train-replicas"):
        assert params[name].get("description"), name
    assert (params["epochs"]["value"], params["train-replicas"]["value"]) == ("20", "2")

    # Defaults: the spec's values, 1 Master and 1 Worker.
    job = filled(workflow, "train")
    assert validate_documents([("pytorchjob", job)], registry) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)

    # What a person types in the Argo UI reaches the job: knobs, node count and Secret.
    typed = {"method": "lora", "epochs": "1", "lora-rank": "4", "train-replicas": "3"}
    job = filled(workflow, "train", **typed, **{"s3-secret": "team-b-s3"})
    assert validate_documents([("pytorchjob", job)], registry) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Worker"]["replicas"] == 2
    for rtype in ("Master", "Worker"):
        (container,) = replicas[rtype]["template"]["spec"]["containers"]
        args = container["args"]
        flags = dict(zip(args[::2], args[1::2], strict=False))
        assert (flags["--method"], flags["--epochs"], flags["--lora-rank"]) == ("lora", "1", "4")
        secrets = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        assert secrets == {"team-b-s3"}
    # One node is a Master alone (the operator refuses a Worker group of 0), picked by `when`.
    alone = filled(workflow, "train-one-node", **{"train-replicas": "1"})
    assert list(alone["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    assert validate_documents([("pytorchjob", alone)], registry) == []
    main = next(t for t in workflow["spec"]["templates"] if t["name"] == "main")
    tasks = {t["name"]: t for t in main["dag"]["tasks"]}
    nodes = "{{workflow.parameters.train-replicas}}"
    assert tasks["train"]["when"] == f"{nodes} > 1"
    assert tasks["train-one-node"]["when"] == f"{nodes} == 1"
    for train in ("train", "train-one-node"):  # the settings are checked before any job
        assert tasks[train]["depends"] == "fetch-weights && check-training"
    assert tasks["record-training"]["depends"] == "train.Succeeded || train-one-node.Succeeded"


def test_settings_are_checked_before_the_job_with_the_specs_rules() -> None:
    from steps.errors import StepError
    from steps.finetune import check_training

    good = {
        "method": "lora",
        "epochs": "1",
        "learning_rate": "5e-4",
        "batch_size": "4",
        "lora_rank": "8",
        "lora_alpha": "16",
        "replicas": "2",
        "s3_secret": "llmflow-s3",
    }
    check_training(**good)
    bad = good | {"replicas": "0", "learning_rate": "inf", "s3_secret": "x\ny: 1"}
    with pytest.raises(StepError) as refused:
        check_training(**bad)
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("workflow parameter learning-rate = 'inf' (finetune.learning_rate")
    assert lines[1] == (
        "workflow parameter train-replicas = '0' (finetune.replicas in the release spec): "
        "Input should be greater than or equal to 1"
    )
    assert lines[2].startswith("workflow parameter s3-secret = 'x\\ny: 1': not a Secret name")


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_the_job_is_owned_by_the_workflow_and_deleted_unless_it_succeeded(launcher) -> None:
    workflow = render("finetune", spec(launcher=launcher))
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    creates = [t for t in templates.values() if t.get("resource", {}).get("action") == "create"]
    assert creates and all(t["resource"]["setOwnerReference"] is True for t in creates)
    assert workflow["spec"]["onExit"] == "stop-training"
    ((step,),) = templates["stop-training"]["steps"]
    assert step["when"] == "{{workflow.status}} != Succeeded"
    delete = templates[step["template"]]["resource"]
    assert delete["action"] == "delete"
    target, created = filled(workflow, step["template"]), filled(workflow, "train")
    assert (target["apiVersion"], target["kind"]) == (created["apiVersion"], created["kind"])
    assert target["metadata"] == {k: created["metadata"][k] for k in ("name", "namespace")}


def test_gpu_jobs_land_on_the_gpu_pool(registry) -> None:
    from workflows.validation import validate_documents

    release = spec(
        gpus_per_replica=8,
        node_pool={
            "gpu": True,
            "node_selector": {"pool": "h100"},
            "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
        },
    )
    workflow = render("finetune", release)
    assert validate_documents([("finetune", workflow)], registry) == []
    pod = filled(workflow, "train")["spec"]["pytorchReplicaSpecs"]["Worker"]
    pod_spec = pod["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"pool": "h100"}
    assert pod_spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "bfloat16" in pod_spec["containers"][0]["args"]


def llmflow_run(tmp_path: Path, s3, release: dict, *sets: str) -> subprocess.Popen[str]:
    """`llmflow run finetune` as a user starts it, in its own process."""
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    command = [sys.executable, "-m", "workflows.cli", "run", "finetune", "-f", str(path)]
    command += [arg for value in sets for arg in ("--set", value)]
    command += ["--root", str(tmp_path / "root")]
    env = {**os.environ, **s3.env(), "COLUMNS": "200"}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def only_run(root: Path) -> dict:
    (status,) = [json.loads(p.read_text()) for p in (root / "runs").glob("*/status.json")]
    return status


def test_a_trainjob_run_with_set_knobs_trains_two_nodes(tmp_path, stores) -> None:
    release = copy.deepcopy(BASE)
    release["finetune"]["launcher"] = "trainjob"
    proc = llmflow_run(tmp_path, stores, release, "epochs=1", "method=lora")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    status = only_run(tmp_path / "root")
    name = status["metadata"]["name"]
    result = summary(stores, name)
    # 80 rows / (batch 8 x 2 nodes) = 5 steps per epoch; one epoch, low-rank adapters.
    assert (result["method"], result["epochs"], result["world_size"]) == ("lora", 1, 2)
    assert result["steps"] == 5
    outputs = {p["name"]: p["value"] for p in status["outputs"]["parameters"]}
    assert outputs["checkpoint"] == f"s3://llmflow-models/tiny-llama-ft/{name}/final"
    job = tmp_path / "root" / "platform" / "llmflow" / "TrainJob" / f"{name}-train"
    assert {p.name for p in job.glob("*.log")} == {"node-0.log", "node-1.log"}
    stored = json.loads((job / "object.json").read_text())  # a succeeded job stays
    (complete,) = stored["status"]["conditions"]
    assert (complete["type"], complete["reason"]) == ("Complete", "AllJobsCompleted")
    (node,) = stored["status"]["jobsStatus"]
    assert (node["name"], node["succeeded"], node["failed"], node["active"]) == ("node", 1, 0, 0)
    owner = stored["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Workflow",
        name,
        status["metadata"]["uid"],
    )
    exit_node = next(
        n for n in status["nodes"].values() if n["displayName"] == "delete-training-job"
    )
    assert exit_node["phase"] == "Skipped"  # the workflow succeeded: the job is kept


def test_stopping_a_run_mid_training_deletes_the_job_and_ends_every_replica(
    tmp_path, stores
) -> None:
    release = copy.deepcopy(BASE)
    release["finetune"].update(batch_size=1, epochs=50)  # far longer than the test waits
    proc = llmflow_run(tmp_path, stores, release)
    root = tmp_path / "root"
    deadline = time.monotonic() + 300
    pids: list[int] = []
    while time.monotonic() < deadline and not pids:  # until the first checkpoint: mid-training
        listing = stores.client().list_objects_v2(Bucket="llmflow-models", Prefix="tiny-llama-ft/")
        if any(o["Key"].endswith("checkpoints/latest") for o in listing.get("Contents", [])):
            (job,) = (root / "platform" / "llmflow" / "PyTorchJob").iterdir()
            pids = [int(p.read_text()) for p in job.glob("*.pid")]
        time.sleep(0.2)
    assert len(pids) == 2, proc.communicate(timeout=60)[0] if proc.poll() is not None else pids
    trainers = [child for pid in pids for child in descendants(pid)]
    assert trainers  # torchrun's worker processes, which must end too
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    for pid in pids + trainers:
        assert not running(pid), f"process {pid} outlived the stopped run"
    status = only_run(root)
    assert (status["phase"], status["message"]) == ("Failed", "Stopped by user (Ctrl-C)")
    job = root / "platform" / "llmflow" / "PyTorchJob" / f"{status['metadata']['name']}-train"
    assert not (job / "object.json").exists()  # deleted by the exit handler
    exit_node = next(
        n for n in status["nodes"].values() if n["displayName"] == "delete-training-job"
    )
    assert exit_node["phase"] == "Succeeded"
