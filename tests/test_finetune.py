"""The finetune pipeline through the local engine: 2 replicas, a killed replica, a failing one."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from steps.tiny_data import DATASET
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


def summary(s3, run: Run) -> dict:
    key = f"tiny-llama-ft/{run.name}/summary.json"
    return json.loads(s3.client().get_object(Bucket="llmflow-models", Key=key)["Body"].read())


def test_two_replicas_fine_tune_and_the_checkpoint_generates(tmp_path, stores) -> None:
    run = start(spec(epochs=8), tmp_path, stores)  # 80 rows / (batch 8 x 2 replicas) x 8
    assert run.execute() == "Succeeded", run.message
    nodes = by_template(run)
    record = outputs(nodes["record-training"])
    assert record["checkpoint"] == f"s3://llmflow-models/tiny-llama-ft/{run.name}/final"
    assert int(record["steps"]) == 40 and float(record["final-loss"]) < 3.0
    result = summary(stores, run)
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
    expected = summary(stores, baseline)

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
    resumed = summary(stores, run)
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


def test_trainjob_launcher_renders_a_valid_trainjob(registry) -> None:
    from workflows.validation import validate_documents

    workflow = render("finetune", spec(launcher="trainjob", replicas=3, procs_per_replica=2))
    assert validate_documents([("finetune", workflow)], registry) == []
    train = next(t for t in workflow["spec"]["templates"] if t["name"] == "train")
    job = yaml.safe_load(train["resource"]["manifest"])
    assert job["kind"] == "TrainJob" and job["spec"]["trainer"]["numNodes"] == 3
    assert job["spec"]["trainer"]["numProcPerNode"] == 2
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"


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
    train = next(t for t in workflow["spec"]["templates"] if t["name"] == "train")
    pod = yaml.safe_load(train["resource"]["manifest"])["spec"]["pytorchReplicaSpecs"]["Worker"]
    pod_spec = pod["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"pool": "h100"}
    assert pod_spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "bfloat16" in pod_spec["containers"][0]["args"]
