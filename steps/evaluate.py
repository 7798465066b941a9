"""The `evaluate-model` step: run an eval suite with lm-eval and store what it measured.

Runs in a pod as
    python -m hera.workflows.runner -e steps.evaluate:evaluate_model <inputs.json>
and outside a workflow it is an ordinary function:
    evaluate_model(model_path="/models/tiny/sha256-...", suite="tiny",
                   output="file:///tmp/eval/candidate", label="candidate")

It evaluates either a checkpoint folder (lm-eval's `hf` back end, in this process) or a
served model (`endpoint`, an OpenAI-compatible completions URL, with lm-eval's
`local-completions` back end), and writes to `<output>/`:

- `samples_<task>.jsonl`: lm-eval's per-sample records, one JSON object a line, each with
  `doc_id` and one key per metric (what `llmflow eval gate` compares, item by item);
- `provenance.json`: harness version, back end, model digest, suite, task versions, batch
  size, seed and limit, so a score can be traced to exactly what produced it;
- `results.json`: lm-eval's aggregated results, written last, so its presence means the
  run finished.

With `reuse` (a URI folder), results of a checkpoint are also kept under `<reuse>/<key>/`, where
the key hashes the model's content digest (`model-digest`, the weights cache's, else computed),
the suite and task versions, the harness version and every setting; a later run with the same
key copies them instead of evaluating again (the reference of a release is usually the model
already in production, evaluated before). A served model's results are never reused.

Logs carry counts and scores only, never prompt or output text.
"""

import hashlib
import json
import logging
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

from hera.workflows import Parameter, script
from hera.workflows.io import Output
from hera.workflows.models import VolumeMount

from evals import catalog, harness
from steps import storage
from steps._hera import CACHE_MOUNT, CACHE_VOLUME, S3_ENV, step_logger
from steps.errors import StepError

log = logging.getLogger(__name__)


class EvaluationError(StepError):
    """The evaluation's inputs are inconsistent or cannot be read; nothing was run."""


class EndpointError(StepError):
    """The served model did not answer (down, unreachable, or failing mid-evaluation)."""


class Evaluation(Output):
    """What the suite measured, and where the full results are."""

    metrics: Annotated[
        dict[str, float],
        Parameter(name="metrics", description='JSON object "task/metric" -> value'),
    ]
    results_uri: Annotated[
        str,
        Parameter(
            name="results-uri",
            description="folder with results.json, samples_<task>.jsonl and provenance.json",
        ),
    ]
    model_digest: Annotated[
        str,
        Parameter(
            name="model-digest",
            description="sha256:<hex> of the checkpoint's files, or the served model name",
        ),
    ]
    reused: Annotated[
        bool, Parameter(name="reused", description="results came from an earlier, same run")
    ] = False


def checkpoint_digest(folder: Path) -> str:
    """`sha256:<hex>` over a checkpoint's files: names and contents, hidden files left out.

    It is the SHA-256 of the lines `<sha256 of file>  <relative path>` sorted by path (what
    `sha256sum` prints), so it can be recomputed with standard tools, and cache metadata
    (`.llmflow/`) does not change it.
    """
    lines = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        content = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                content.update(block)
        lines.append(f"{content.hexdigest()}  {relative.as_posix()}\n")
    if not lines:
        raise EvaluationError(f"model-path {folder}: no files; point it at a checkpoint folder")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _check_inputs(
    model_path: str, endpoint: str, served_model_name: str, tokenizer: str, output: str
) -> None:
    if bool(model_path) == bool(endpoint):
        raise EvaluationError(
            "give exactly one of model-path (a checkpoint folder) and endpoint (an "
            f"OpenAI-compatible completions URL); got model-path={model_path!r}, "
            f"endpoint={endpoint!r}"
        )
    if model_path and not (Path(model_path) / "config.json").is_file():
        raise EvaluationError(
            f"model-path {model_path!r}: no config.json there; point it at a checkpoint "
            "folder (a weights cache entry or a training run's final/)"
        )
    if endpoint:
        if not endpoint.startswith(("http://", "https://")):
            raise EvaluationError(
                f"endpoint {endpoint!r}: use an http(s) URL of the completions route, "
                "e.g. http://127.0.0.1:8000/v1/completions"
            )
        if not served_model_name:
            raise EvaluationError(
                f"endpoint {endpoint}: served-model-name is required (the name the server "
                "serves the model under, vLLM's --served-model-name)"
            )
        if not tokenizer or not (Path(tokenizer) / "tokenizer_config.json").is_file():
            raise EvaluationError(
                f"endpoint {endpoint}: tokenizer {tokenizer!r} is not a local tokenizer "
                "folder; give the served model's checkpoint folder (it holds the tokenizer)"
            )
    if not output.startswith(("s3://", "file:///")):
        raise EvaluationError(f"output {output!r}: use s3://bucket/prefix or file:///path")


def _parse_data_files(data_files: str) -> dict[str, dict[str, str]]:
    """The `data-files` parameter: task -> split -> URI or local path."""
    if not data_files.strip():
        return {}
    try:
        parsed = json.loads(data_files)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"data-files is not JSON ({exc})") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(splits, dict) and all(isinstance(u, str) for u in splits.values())
        for splits in parsed.values()
    ):
        raise EvaluationError(
            'data-files must be a JSON object {"<task>": {"<split>": "<uri>"}}, e.g. '
            '{"arc_easy": {"test": "s3://bucket/arc/test.jsonl"}}'
        )
    return parsed


def _stage(data_files: dict[str, dict[str, str]], folder: Path) -> dict[str, dict[str, str]]:
    """Bring data-file URIs (s3://, file://) to local files; plain paths stay where they are."""
    staged: dict[str, dict[str, str]] = {}
    for task, splits in data_files.items():
        staged[task] = {}
        for split, uri in splits.items():
            if "://" in uri:
                local = folder / task / f"{split}{Path(uri).suffix}"
                storage.download(uri, local)
                staged[task][split] = str(local)
            elif Path(uri).is_file():
                staged[task][split] = uri
            else:
                raise EvaluationError(f"data-files {task}/{split}: no file {uri}")
    return staged


def _provenance(
    results: dict[str, Any], backend: str, digest: str, suite: str, **settings: Any
) -> dict[str, Any]:
    tasks = {t.name: t for t in catalog.suite_tasks(suite)}
    return {
        "harness": {"name": "lm-eval", "version": version("lm_eval")},
        "backend": backend,
        "model_digest": digest,
        "suite": {"name": suite, "version": catalog.suite(suite).version},
        "tasks": {
            name: {
                "version": results.get("versions", {}).get(name, info.version),
                "output_type": info.output_type,
                "samples": results.get("n-samples", {}).get(name, {}).get("effective"),
            }
            for name, info in tasks.items()
        },
        **settings,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write(results: dict[str, Any], provenance: dict[str, Any], output: str) -> None:
    """Samples and provenance first, results.json last: its presence means a complete run."""
    samples = results.pop("samples", {})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for task, records in samples.items():
            path = folder / f"samples_{task}.jsonl"
            path.write_text("".join(harness.to_json(r) + "\n" for r in records))
            storage.upload(path, storage.join(output, path.name))
        (folder / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
        storage.upload(folder / "provenance.json", storage.join(output, "provenance.json"))
        (folder / "results.json").write_text(harness.to_json(results, indent=1) + "\n")
        storage.upload(folder / "results.json", storage.join(output, "results.json"))


@script(
    env=S3_ENV,
    volume_mounts=[VolumeMount(name=CACHE_VOLUME, mount_path=CACHE_MOUNT)],
)
def evaluate_model(
    suite: Annotated[str, Parameter(name="suite", description="an eval suite: evals/suites/")],
    output: Annotated[str, Parameter(name="output", description="s3:// or file:/// folder")],
    model_path: Annotated[
        str, Parameter(name="model-path", description="local checkpoint folder (hf back end)")
    ] = "",
    endpoint: Annotated[
        str, Parameter(name="endpoint", description="OpenAI-compatible /v1/completions URL")
    ] = "",
    served_model_name: Annotated[str, Parameter(name="served-model-name")] = "",
    tokenizer: Annotated[
        str, Parameter(name="tokenizer", description="local tokenizer folder (endpoint)")
    ] = "",
    batch_size: Annotated[int, Parameter(name="batch-size")] = 1,
    seed: Annotated[int, Parameter(name="seed")] = 1234,
    limit: Annotated[int, Parameter(name="limit", description="items per task; 0: all")] = 0,
    label: Annotated[
        str, Parameter(name="label", description="what this model is: candidate, reference")
    ] = "",
    data_files: Annotated[
        str,
        Parameter(
            name="data-files",
            description='JSON {"<task>": {"<split>": "<s3:// or file:// URI>"}} data overrides',
        ),
    ] = "",
    reuse: Annotated[
        str,
        Parameter(name="reuse", description="URI folder of earlier results to reuse; empty: off"),
    ] = "",
    model_digest: Annotated[
        str,
        Parameter(
            name="model-digest",
            description="the checkpoint's content digest, when known (the weights cache's)",
        ),
    ] = "",
) -> Evaluation:
    """Evaluate a checkpoint or a served model on `suite`; write and return its scores."""
    step_logger(__name__, quiet=("botocore",))
    # lm-eval's INFO lines are many; its warnings (and ours) are what a reader needs.
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    _check_inputs(model_path, endpoint, served_model_name, tokenizer, output)
    overrides = _parse_data_files(data_files)
    tasks = catalog.suite_tasks(suite)  # an unknown suite or task fails here, before lm-eval
    if model_path:
        # The weights cache already names the checkpoint by its digest: hash again only without.
        digest = model_digest or checkpoint_digest(Path(model_path))
        backend, args = harness.hf_model_args(model_path)
    else:
        digest = served_model_name
        backend, args = harness.endpoint_model_args(endpoint, served_model_name, tokenizer, seed)
    settings = {"batch_size": batch_size, "seed": seed, "limit": limit, "data_files": overrides}
    # A served model's name says nothing of its weights: its results are never reused.
    kept = (
        storage.join(reuse, reuse_key(digest, backend, suite, settings))
        if reuse and model_path
        else ""
    )
    earlier = storage.read_text(storage.join(kept, "results.json")) if kept else None
    if earlier is not None:
        results = json.loads(earlier)
        _copy_results(kept, output, [t.name for t in tasks])
        log.info("%s: %s evaluated before with the same settings; reused %s", suite, digest, kept)
        return Evaluation(
            metrics=harness.flat_metrics(results),
            results_uri=output.rstrip("/"),
            model_digest=digest,
            reused=True,
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as staging:
        files = _stage(overrides, Path(staging))
        try:
            results = harness.run_suite(
                suite,
                backend,
                args,
                batch_size=batch_size,
                seed=seed,
                limit=limit or None,
                data_files=files,
            )
        except Exception as exc:
            if endpoint and isinstance(exc, _request_errors()):
                raise EndpointError(
                    f"endpoint {endpoint} failed during the evaluation ({_describe(exc)} "
                    f"after {harness.ENDPOINT_TRIES} tries of one request): is the server up, "
                    "and is this its completions URL? No results were written"
                ) from None
            raise
    metrics = harness.flat_metrics(results)
    provenance = _provenance(
        results,
        backend,
        digest,
        suite,
        model_path=model_path or None,
        endpoint=endpoint or None,
        served_model_name=served_model_name or None,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        label=label,
        data_files=overrides,
    )
    if kept:
        _write(dict(results), provenance, kept)
    _write(results, provenance, output)
    for task in tasks:
        prefix = task.name + "/"
        scores = ", ".join(
            f"{k[len(prefix) :]} {v:.4f}" for k, v in metrics.items() if k.startswith(prefix)
        )
        count = provenance["tasks"][task.name]["samples"]
        log.info("%s %s: %s samples, %s", label or "model", task.name, count, scores)
    log.info("%s: %s in %.1f s -> %s", suite, digest, time.monotonic() - started, output)
    return Evaluation(metrics=metrics, results_uri=output.rstrip("/"), model_digest=digest)


def reuse_key(digest: str, backend: str, suite: str, settings: dict[str, Any]) -> str:
    """What makes two evaluations the same: model content, tasks, harness, settings."""
    identity = {
        "digest": digest,
        "backend": backend,
        "suite": suite,
        "suite_version": catalog.suite(suite).version,
        "tasks": {t.name: t.version for t in catalog.suite_tasks(suite)},
        "harness": version("lm_eval"),
        **settings,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _copy_results(source: str, output: str, tasks: list[str]) -> None:
    """Copy kept results to `output`, results.json last as `_write` does."""
    with tempfile.TemporaryDirectory() as tmp:
        names = [*(f"samples_{t}.jsonl" for t in tasks), "provenance.json", "results.json"]
        for name in names:
            local = Path(tmp) / name
            storage.download(storage.join(source, name), local)
            storage.upload(local, storage.join(output, name))


def _request_errors() -> tuple[type[BaseException], ...]:
    """The errors a dead or failing endpoint raises through lm-eval's API back end."""
    import requests

    return (requests.RequestException,)


def _describe(exc: BaseException) -> str:
    """The error's kind and HTTP status; its text may quote a request, so it is left out."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__
