"""`llmflow demo`: the whole lifecycle on one machine, on a tiny model, by the release pipeline.

1. create the tiny model (no download) and put it, with the tiny instruction dataset, in a
   local S3 server (s3rver),
2. render every pipeline as a WorkflowTemplate, and the spec's schedules as CronWorkflows,
   validate them strictly and apply the templates to the local platform,
3. start a local registry and the stand-ins the image builds need (a Python base image, a
   torch wheel index when download.pytorch.org is out of reach),
4. serve the base model: the `deploy` pipeline's first release (vLLM behind the local
   nginx gateway, scraped by a local Prometheus),
   While a shadow is open, a client plays the users (`serving.traffic`): streamed
   requests through the gateway, three in flight,
5. release: the `release` pipeline, started with the Python API (`workflows.api.submit`)
   on the local engine: fetch, build the images, fine-tune with two replicas, evaluate and
   gate, shadow the fine-tuned model (the users' requests mirrored to it), canary it stage
   by stage, promote, record,
6. ask the gateway a question with the `openai` client,
7. release a deliberately bad candidate (the same model served with `--max-num-seqs 1`,
   slow under load): its shadow fails and it is rolled back before any user was served by
   it; production stays the first,
8. print the release record, what the users saw, where each report is, and the time it all
   took.

What it serves stays up (`llmflow local status`) until `llmflow local down`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError, ValidationFailed
from workflows.local.s3 import LocalS3, upload_folder
from workflows.local.view import LiveView, make_console
from workflows.spec import ReleaseSpec, load_spec

console = make_console()


def run_demo(
    spec_path: Path, workdir: Path, root: Path = Path(".llmflow"), images: bool = True
) -> dict[str, str]:
    """Run the demo; returns what it found out (release ids, outcome, gateway, answer).

    Args:
        spec_path: The release spec (its source must be s3://).
        workdir: Where the tiny model, the S3 server's data, the registry and specs go.
        root: The local engine's folder (runs, templates, platform, release records).
        images: Build the images in the release (False: a spec without `images`).
    """
    from steps.tiny_model import create_tiny_model
    from steps.weights.uri import parse_source_uri
    from workflows.local.build_storage import BuildStorage
    from workflows.local.kinds.overview import down

    started = time.monotonic()
    spec = load_spec(spec_path)
    if not images and spec.images is not None:
        spec = spec.model_copy(update={"images": None})
    source = parse_source_uri(spec.model.source)
    if source.scheme != "s3":
        raise LLMFlowError(f"{spec_path}: the demo serves the model from S3; use an s3:// source")
    workdir.mkdir(parents=True, exist_ok=True)
    records = f"file://{(root / 'records').resolve()}"
    outputs: dict[str, str] = {"records": records}

    _section("1. tiny model, local S3")
    model_dir = create_tiny_model(workdir / "tiny-model")
    with ExitStack() as stack:
        s3 = stack.enter_context(LocalS3(workdir / "s3", buckets=(source.location,)))
        os.environ.update(s3.env())  # the Secret llmflow-s3 is read from these locally
        count = upload_folder(s3.client(), model_dir, source.location, source.prefix)
        _upload_dataset(spec, s3)
        console.print(f"uploaded {count} files to {spec.model.source} at {s3.endpoint}")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}

        _section("2. WorkflowTemplates and CronWorkflows")
        good = _write_spec(spec, workdir / "tiny.yaml")
        _templates(good, root)

        overrides = {"records": records}
        if spec.images is not None:
            _section("3. a local registry for the images")
            overrides.update(_image_services(stack, workdir, env))
            # The builds' layers go with the demo: each build of the steps image leaves GBs.
            env.update(stack.enter_context(BuildStorage(workdir / "containers")).env())

        _section("4. serve the base model (the first release of `deploy`)")
        for line in down(root):  # a demo starts from nothing served
            console.print(line, highlight=False)
        _submit("deploy", good, root, env, {"candidate": spec.model.source})
        users = _users(root, spec)
        stack.callback(users.stop)

        _section("5. release the fine-tuned model: `llmflow submit release` on this machine")
        first = _submit("release", good, root, env, overrides, users.update)
        outputs.update(first=first.name, checkpoint=first.outputs["checkpoint"])
        outputs["version"] = first.outputs["version"]

        _section("6. ask it through the gateway, as an application would")
        outputs.update(_ask(root, spec))

        _section("7. release a bad candidate: the same model, served with --max-num-seqs 1")
        console.print("its shadow should fail: the users' requests, mirrored, queue on it")
        bad = _write_spec(_slow(spec), workdir / "tiny-slow.yaml")
        second = _submit("release", bad, root, env, overrides, users.update, expect="Failed")
        outputs.update(second=second.name, second_message=second.message)
        _templates(good, root, quiet=True)  # the platform's templates are the good spec's again
        seen = users.stop()
        outputs.update(users=seen.line(), user_errors=str(seen.errors), user_answers=str(seen.ok))
        outputs["shadow_windows"] = str(users.windows)

    _section("8. the record, and where to look")
    console.print(f"the users saw, in both shadows: {outputs['users']}", highlight=False)
    outputs.update(_show(spec, records, root, first.name, second.name))
    minutes = (time.monotonic() - started) / 60
    outputs["minutes"] = f"{minutes:.1f}"
    console.print(f"the whole lifecycle took {minutes:.1f} min", highlight=False)
    return outputs


def _users(root: Path, spec: ReleaseSpec) -> Any:
    """Users for the shadows: streamed requests through the gateway, three in flight.

    A shadow judges the candidate on live traffic, and locally nobody sends any: these users
    send it while a shadow window is open (`serving.traffic.ShadowUsers`).
    """
    from serving.labels import served_name
    from serving.probe_sets import load_probe_set
    from serving.traffic import ShadowUsers, Traffic
    from workflows.local.kinds.overview import status

    assert spec.serving is not None
    gateway = next(iter(status(root)["gateways"].values()))
    prompts = load_probe_set(spec.serving.probe.prompts)
    console.print(
        f"users: 3 streamed requests in flight through {gateway} while a shadow is open",
        highlight=False,
    )
    return ShadowUsers(lambda: Traffic(gateway, served_name(spec), prompts, concurrency=3))


def _write_spec(spec: ReleaseSpec, path: Path) -> Path:
    """The spec as a file, for the templates and the record to name."""
    path.write_text(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    )
    return path


def _slow(spec: ReleaseSpec) -> ReleaseSpec:
    """The same release with a serving config that queues requests: a new version, slower."""
    assert spec.serving is not None
    args = [*spec.serving.vllm_args, "--max-num-seqs", "1"]
    serving = spec.serving.model_copy(update={"vllm_args": args})
    return spec.model_copy(update={"serving": serving})


def _templates(spec_path: Path, root: Path, quiet: bool = False) -> None:
    """Render, validate strictly and apply every template; render the CronWorkflows."""
    from workflows.api import apply_local_templates
    from workflows.local.templates import LocalTemplates
    from workflows.schedules import cron_workflows
    from workflows.templates import pipeline_templates
    from workflows.validation import SchemaRegistry, validate_documents

    spec = load_spec(spec_path)
    templates = pipeline_templates(spec)
    crons = cron_workflows(spec, templates)
    documents = [(n, t) for n, t in templates.items()] + [(c["metadata"]["name"], c) for c in crons]
    problems = [p for p in validate_documents(documents, SchemaRegistry()) if not p.unchecked]
    if problems:
        raise ValidationFailed([str(p) for p in problems])
    apply_local_templates(spec, LocalTemplates(root))
    if not quiet:
        console.print(
            f"{len(templates)} WorkflowTemplates ({', '.join(templates)}) and {len(crons)} "
            "CronWorkflows pass strict validation; the templates are applied locally "
            "(`llmflow templates apply --local`)",
            highlight=False,
        )


def _image_services(stack: ExitStack, workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """A registry, the base image and, without download.pytorch.org, a torch wheel index."""
    from workflows.local.bases import build_python_base
    from workflows.local.registry import LocalRegistry
    from workflows.local.wheels import LocalWheelIndex, find_torch_wheel

    registry = stack.enter_context(LocalRegistry(workdir / "registry"))
    build_python_base(Path(".llmflow/bases/python.tar"))
    overrides = {"registry": f"{registry.host}/llmflow"}
    links = [Path(p) for p in env.get("PIP_FIND_LINKS", "/opt/wheels").split()]
    wheel = find_torch_wheel(links)
    if wheel is not None:
        index = stack.enter_context(LocalWheelIndex([wheel], workdir / "wheel-index"))
        overrides["torch-index"] = index.url
    console.print(
        f"registry {registry.host}; base image .llmflow/bases/python.tar"
        + (f"; torch from {wheel.name}" if wheel else ""),
        highlight=False,
    )
    return overrides


def _submit(
    pipeline: str,
    spec_path: Path,
    root: Path,
    env: dict[str, str],
    parameters: dict[str, str],
    follow: Callable[[dict[str, Any]], None] | None = None,
    expect: str = "Succeeded",
) -> Any:
    """Run a pipeline with the Python API on the local engine, with a live view."""
    from workflows.api import Local, submit
    from workflows.local.store import RunStore
    from workflows.local.view import render

    view = LiveView(console)

    def on_change(run: Any) -> None:
        view.on_change(run)
        if follow is not None:
            follow(run.status())

    target = Local(root=root, env=env, on_change=on_change)
    with view:
        result = submit(pipeline, spec_path, parameters=parameters, target=target).wait()
    status = RunStore(root.resolve(), result.name).read_status()
    console.print(render(status, outputs=False))
    message = f": {result.message}" if result.message else ""
    console.print(f"{result.name} {result.phase}{message}", highlight=False)
    if result.phase != expect:
        raise LLMFlowError(
            f"run {result.name} {result.phase} (expected {expect}){message}; see "
            f"`llmflow runs logs {result.name}`"
        )
    return result


def _ask(root: Path, spec: ReleaseSpec) -> dict[str, str]:
    """One completion through the gateway with the openai client."""
    from openai import OpenAI

    from serving.labels import served_name
    from workflows.local.kinds.overview import status

    gateway = next(iter(status(root)["gateways"].values()))
    client = OpenAI(base_url=f"{gateway}/v1", api_key="not-needed-locally")
    question = "Question: What is 3 plus 4?\nAnswer:"
    completion = client.completions.create(
        model=served_name(spec), prompt=question, max_tokens=4, temperature=0
    )
    answer = completion.choices[0].text
    console.print(
        f"{gateway}/v1/completions  {question!r} -> {answer!r}\n"
        "still serving afterwards: `llmflow local status`, `llmflow local down`",
        highlight=False,
    )
    return {"gateway": gateway, "answer": answer}


def _show(spec: ReleaseSpec, records: str, root: Path, first: str, second: str) -> dict[str, str]:
    """The production record, and the reports of both releases."""
    from steps.releases import RecordStore
    from workflows.releases_cli import describe

    store = RecordStore.open(records)
    production = store.alias(spec.model.name, "production")
    if production is None or production.workflow is None or production.workflow.name != first:
        raise LLMFlowError(f"production of {spec.model.name} is not the release {first}")
    console.print(
        describe(production, "production", store.record_uri(spec.model.name, production.release)),
        highlight=False,
    )
    runs = (root / "runs").resolve()
    reports = {  # the steps' output artifacts, as the Argo UI lists them
        "gate report": sorted((runs / first / "artifacts").rglob("index.html")),
        "gate chart": sorted((runs / first / "artifacts").rglob("gate.png")),
        "shadow (passed)": sorted((runs / first / "artifacts").rglob("shadow.json")),
        "shadow (failed)": sorted((runs / second / "artifacts").rglob("shadow.json")),
        "canary stages (promoted)": sorted((runs / first / "artifacts").rglob("stage-*.png")),
        "canary stages (rolled back)": sorted((runs / second / "artifacts").rglob("stage-*.png")),
    }
    for what, paths in reports.items():
        for path in paths:
            console.print(f"{what}: {path}", highlight=False)
    console.print(
        f"`llmflow releases list {spec.model.name}`, `llmflow releases show "
        f"{spec.model.name}`, `llmflow runs list`",
        highlight=False,
    )
    return {
        "production": production.release,
        "reports": str(len([p for paths in reports.values() for p in paths])),
    }


def _upload_dataset(spec: ReleaseSpec, s3: LocalS3) -> None:
    """Put the tiny instruction dataset where the spec says the training data is."""
    from urllib.parse import urlsplit

    from steps import storage
    from steps.tiny_data import DATASET

    if spec.finetune is None or not spec.finetune.dataset.startswith("s3://"):
        return
    bucket = urlsplit(spec.finetune.dataset).netloc
    client = s3.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    storage.upload(DATASET / "train.jsonl", spec.finetune.dataset)


def _section(title: str) -> None:
    """A heading: a rule on a terminal, a plain line in a log."""
    if console.is_terminal:
        console.rule(f"[bold]{title}")
    else:
        console.print(f"== {title}", highlight=False)
