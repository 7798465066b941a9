"""`llmflow demo`: the lifecycle as far as this release goes, on one machine, on a tiny model.

1. create the tiny model (no download),
2. put it in a local S3 server (s3rver),
3. render the pipelines for releases/tiny.yaml and validate them strictly,
4. run fetch-weights with the local engine (what `llmflow run fetch-weights -f
   releases/tiny.yaml` does), its step exactly as the pod runs it, the cache volume a local
   folder; then once more to show the cache hit,
5. run finetune: the PyTorchJob runs as two local replicas (DDP over gloo) on the tiny
   instruction dataset, checkpointing to S3,
6. run evaluate: lm-eval's tiny suite on the fine-tuned model (candidate) and the base model
   (reference) in parallel, then the paired non-inferiority gate and its report,
7. run deploy twice: the base model as the first release (served directly by vLLM behind the
   local gateway), then the fine-tuned model as a canary, probed and judged stage by stage,
   and promoted; then ask the gateway a question. The platform keeps serving afterwards
   (`llmflow local status`, `llmflow local down`),
8. load the fine-tuned model from S3 with transformers and generate.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from workflows.exceptions import LLMFlowError, ValidationFailed
from workflows.local.engine import Run, RunOptions
from workflows.local.s3 import LocalS3, upload_folder
from workflows.local.store import Node
from workflows.local.view import LiveView, make_console
from workflows.local.view import render as render_tree
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import SchemaRegistry, validate_documents

console = make_console()


def run_demo(spec_path: Path, workdir: Path, root: Path = Path(".llmflow")) -> dict[str, str]:
    """Run the demo; returns the fetch step's output parameters (path, digest, ...).

    Args:
        spec_path: The release spec (its source must be s3://).
        workdir: Where the tiny model and the local S3 server's data go.
        root: The local engine's folder (runs, volumes), as for `llmflow run --root`.
    """
    from steps.tiny_model import create_tiny_model
    from steps.weights.uri import parse_source_uri

    spec = load_spec(spec_path)
    source = parse_source_uri(spec.model.source)
    if source.scheme != "s3":
        raise LLMFlowError(f"{spec_path}: the demo serves the model from S3; use an s3:// source")
    workdir.mkdir(parents=True, exist_ok=True)

    _section("1. tiny model")
    model_dir = create_tiny_model(workdir / "tiny-model")
    console.print(f"created {model_dir}")

    with LocalS3(workdir / "s3", buckets=(source.location,)) as s3:
        _section("2. local S3")
        count = upload_folder(s3.client(), model_dir, source.location, source.prefix)
        console.print(f"uploaded {count} files to {spec.model.source} at {s3.endpoint}")

        _section("3. render and lint")
        workflow = render("fetch-weights", spec)
        pipelines = {"fetch-weights": workflow}
        if spec.finetune is not None:
            pipelines["finetune"] = render("finetune", spec)
        if spec.evaluate is not None:
            pipelines["evaluate"] = render("evaluate", spec)
        if spec.serving is not None:
            pipelines["deploy"] = render("deploy", spec)
        docs = list(pipelines.items())
        problems = [p for p in validate_documents(docs, SchemaRegistry()) if not p.unchecked]
        if problems:
            raise ValidationFailed([str(p) for p in problems])
        console.print(f"{', '.join(pipelines)} render to Workflows that pass strict validation")

        _section("4. llmflow run fetch-weights")
        os.environ.update(s3.env())  # the Secret llmflow-s3 is read from these locally
        env = dict(os.environ)
        outputs, _ = _run(workflow, root, env, "fetch-weights")
        print(f"path:   {outputs['path']}\ndigest: {outputs['digest']}", flush=True)
        started = time.monotonic()
        again, _ = _run(workflow, root, env, "fetch-weights")
        console.print(
            f"second run: cache-hit={again['cache-hit']} "
            f"({time.monotonic() - started:.1f} s including the step's interpreter start)"
        )
        fetched = Path(outputs["path"])
        model_dir = fetched
        if spec.finetune is not None:
            _section("5. llmflow run finetune")
            _upload_dataset(spec.finetune.dataset, s3)
            record, _ = _run(pipelines["finetune"], root, env, "record-training")
            print(
                f"checkpoint: {record['checkpoint']}\nfinal loss: {record['final-loss']} "
                f"after {record['steps']} steps",
                flush=True,
            )
            model_dir = workdir / "fine-tuned"
            _download(record["checkpoint"], model_dir)
            outputs = {**outputs, **record}
            if spec.evaluate is not None:
                _section("6. llmflow run evaluate")
                verdict = _evaluate(pipelines["evaluate"], root, env, record["checkpoint"], spec)
                outputs = {**outputs, **verdict}
            if spec.serving is not None:
                _section("7. llmflow run deploy")
                served = _deploy(pipelines["deploy"], root, env, spec, record)
                outputs = {**outputs, **served}

    _section("8. load and generate")
    for folder in dict.fromkeys([fetched, model_dir]):
        tokens = _generate(folder)
        console.print(f"{folder} loads in transformers and generated {tokens} tokens")
    return outputs


def _evaluate(
    workflow: dict[str, Any], root: Path, env: dict[str, str], candidate: str, spec: Any
) -> dict[str, str]:
    """Gate the fine-tuned checkpoint against the base model; print where the report is."""
    parameters = {"candidate": candidate, "reference": spec.model.source}
    # Two evaluations run side by side: one torch thread each is fastest on a small machine.
    verdict, gate = _run(
        workflow, root, {**env, "OMP_NUM_THREADS": "1"}, "gate-evaluation", parameters
    )
    report = Path(next(a["path"] for a in gate.outputs["artifacts"] if a["name"] == "report"))
    console.print(f"gate passed: {verdict['passed']}\n{verdict['decision']}", highlight=False)
    console.print(f"report: {report / 'index.html'} and {report / 'gate.png'}", highlight=False)
    return {"passed": verdict["passed"], "report": str(report / "index.html")}


def _deploy(
    workflow: dict[str, Any], root: Path, env: dict[str, str], spec: Any, record: dict[str, str]
) -> dict[str, str]:
    """Serve the base model, then canary the fine-tuned one; ask the gateway a question."""
    from serving.labels import served_name
    from workflows.local.kinds.overview import down, status

    # A demo starts from nothing served: what an earlier demo left running goes first.
    for line in down(root):
        console.print(line, highlight=False)

    releases = [
        ("first release (no stable version yet): the base model", spec.model.source),
        ("next release: the fine-tuned model, as a canary", record["checkpoint"]),
    ]
    plan: dict[str, str] = {}
    for title, candidate in releases:
        console.print(title, highlight=False)
        plan, _ = _run(workflow, root, env, "plan-rollout", {"candidate": candidate})
    gateway = next(iter(status(root)["gateways"].values()))
    question = "Question: What is 3 plus 4?\nAnswer:"
    answer = _complete(gateway, served_name(spec), question)
    console.print(
        f"serving version {plan['version']} at {gateway}\n"
        f"{question!r} -> {answer!r}\n"
        f"still serving: `llmflow local status` shows it, `llmflow local down` stops it",
        highlight=False,
    )
    return {"gateway": gateway, "version": plan["version"], "answer": answer}


def _complete(gateway: str, model: str, prompt: str) -> str:
    """One completion through the gateway, as a client of the model would ask."""
    import json
    import urllib.request

    body = {"model": model, "prompt": prompt, "max_tokens": 4, "temperature": 0}
    request = urllib.request.Request(
        f"{gateway}/v1/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["choices"][0]["text"])


def _upload_dataset(uri: str, s3: LocalS3) -> None:
    """Put the tiny instruction dataset where the spec says the training data is."""
    from urllib.parse import urlsplit

    from steps import storage
    from steps.tiny_data import DATASET

    if not uri.startswith("s3://"):
        return
    bucket = urlsplit(uri).netloc
    client = s3.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    storage.upload(DATASET / "train.jsonl", uri)


def _download(uri: str, folder: Path) -> None:
    """Copy a model folder from S3 (the fine-tuned checkpoint) to a local folder."""
    from steps.weights.fetch import fetch_model

    result = fetch_model(uri, folder.parent / ".fine-tuned-cache", "fine-tuned", progress=False)
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(result.path, folder, ignore=shutil.ignore_patterns(".llmflow"))


def _section(title: str) -> None:
    """A heading: a rule on a terminal, a plain line in a log."""
    if console.is_terminal:
        console.rule(f"[bold]{title}")
    else:
        console.print(f"== {title}", highlight=False)


def _run(
    workflow: dict[str, Any],
    root: Path,
    env: dict[str, str],
    step_name: str,
    parameters: dict[str, str] | None = None,
) -> tuple[dict[str, str], Node]:
    """Execute a Workflow with the local engine and a live view; one step's outputs and node."""
    view = LiveView(console)
    options = RunOptions(root=root, env=env, on_change=view.on_change, parameters=parameters or {})
    run = Run(workflow, options)
    with view:
        phase = run.execute()
    console.print(render_tree(run.status(), outputs=True))
    if phase != "Succeeded":
        raise LLMFlowError(
            f"run {run.name} {phase}: {run.message}; see `llmflow runs logs {run.name}`"
        )
    step = next(n for n in run.nodes.values() if n.template_name == step_name)
    return {p["name"]: p["value"] for p in step.outputs["parameters"]}, step


def _generate(model_dir: Path) -> int:
    """Load a model with transformers and greedily generate a few tokens; returns how many."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tokenizer("Question: What is the capital of France? Answer:", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return int(out.shape[1] - inputs["input_ids"].shape[1])
