"""`llmflow demo`: the lifecycle as far as this release goes, on one machine, on a tiny model.

1. create the tiny model (no download),
2. put it in a local S3 server (s3rver),
3. render the fetch-weights pipeline for releases/tiny.yaml and validate it strictly,
4. run its step exactly as the pod would (`python -m hera.workflows.runner -e ...`), with
   the cache volume mapped to a local folder, then once more to show the cache hit,
5. load the fetched model with transformers and generate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from workflows.exceptions import LLMFlowError, ValidationFailed
from workflows.local.s3 import LocalS3, upload_folder
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import SchemaRegistry, validate_documents

console = Console(stderr=True)


def run_demo(spec_path: Path, workdir: Path) -> dict[str, str]:
    """Run the demo; returns the fetch step's output parameters (path, digest, ...)."""
    from steps.tiny_model import create_tiny_model
    from steps.weights.uri import parse_source_uri

    spec = load_spec(spec_path)
    source = parse_source_uri(spec.model.source)
    if source.scheme != "s3":
        raise LLMFlowError(f"{spec_path}: the demo serves the model from S3; use an s3:// source")
    workdir.mkdir(parents=True, exist_ok=True)

    console.rule("[bold]1. tiny model")
    model_dir = create_tiny_model(workdir / "tiny-model")
    console.print(f"created {model_dir}")

    with LocalS3(workdir / "s3", buckets=(source.location,)) as s3:
        console.rule("[bold]2. local S3")
        count = upload_folder(s3.client(), model_dir, source.location, source.prefix)
        console.print(f"uploaded {count} files to {spec.model.source} at {s3.endpoint}")

        console.rule("[bold]3. render and lint fetch-weights")
        workflow = render("fetch-weights", spec)
        problems = validate_documents([("fetch-weights", workflow)], SchemaRegistry())
        if problems:
            raise ValidationFailed([str(p) for p in problems])
        console.print("fetch-weights renders to a Workflow that passes strict validation")

        console.rule("[bold]4. fetch-weights step")
        cache = (workdir / "cache").resolve()
        outputs = _run_step(workflow, "fetch-weights", {"cache-root": str(cache)}, s3, workdir)
        print(f"path:   {outputs['path']}\ndigest: {outputs['digest']}", flush=True)
        started = time.monotonic()
        again = _run_step(workflow, "fetch-weights", {"cache-root": str(cache)}, s3, workdir)
        console.print(
            f"second fetch: cache-hit={again['cache-hit']} "
            f"({time.monotonic() - started:.1f} s including interpreter start)"
        )

    console.rule("[bold]5. load and generate")
    tokens = _generate(Path(outputs["path"]))
    console.print(f"the fetched model loads in transformers and generated {tokens} tokens")
    return outputs


def _run_step(
    workflow: dict[str, Any],
    template_name: str,
    overrides: dict[str, str],
    s3: LocalS3,
    workdir: Path,
) -> dict[str, str]:
    """Run one script template's command as a local process, the way its pod would run it."""
    spec = workflow["spec"]
    template = next(t for t in spec["templates"] if t["name"] == template_name)
    task = next(
        task
        for t in spec["templates"]
        for task in t.get("dag", {}).get("tasks", [])
        if task["template"] == template_name
    )
    params = {p["name"]: p.get("value") for p in spec["arguments"]["parameters"]}
    args = {a["name"]: a["value"] for a in task["arguments"]["parameters"]}
    inputs = []
    for declared in template["inputs"]["parameters"]:
        name = declared["name"]
        value = overrides.get(name, args.get(name, declared.get("default")))
        for key, param in params.items():
            value = value.replace(f"{{{{workflow.parameters.{key}}}}}", str(param))
        inputs.append({"name": name, "value": value})

    run_dir = workdir / "step"
    outputs_dir = run_dir / "outputs"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "inputs.json").write_text(json.dumps(inputs))
    script = template["script"]
    command = [sys.executable if c == "python" else c for c in script["command"]]
    env = {**os.environ, **s3.env(), "hera__outputs_directory": str(outputs_dir)}
    subprocess.run([*command, *script["args"], str(run_dir / "inputs.json")], env=env, check=True)
    return {
        p["name"]: (outputs_dir / "parameters" / p["name"]).read_text()
        for p in template["outputs"]["parameters"]
    }


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
