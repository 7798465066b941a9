"""Run a suite with lm-eval's Python API: task loading, per-task data overrides, model back ends.

The catalog (`evals.catalog`) says what a suite is without lm-eval; this module is the side
that imports it. Tasks are loaded by a `TaskManager` that indexes only our folders (and the
built-in families a suite names), and every task's data files are made absolute, so a run
neither depends on the working directory nor downloads anything it was not told to.

Data overrides point any task (ours or a built-in one such as `arc_easy`) at local files:

    run_suite("arc", *hf_model_args("/models/tiny"), data_files={
        "arc_easy": {"test": "/data/arc/test.jsonl"}})

The files must hold the documents in the shape the task's templates expect; splits not given
are dropped from the task, so it evaluates on what is there and takes no few-shot examples
from a split that is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals import catalog
from evals.catalog import CatalogError, TaskInfo

#: task name -> split name -> local file.
DataFiles = Mapping[str, Mapping[str, str]]

#: datasets' builder for each data file suffix.
_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
}

_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")

#: Group fields a suite file may carry besides its task list.
_GROUP_KEYS = ("group_alias", "aggregate_metric_list", "metadata")

#: Tries per request to an endpoint: lm-eval's default (3, with growing waits) turns a dead
#: server into a slow failure; two tries still ride out a single dropped connection.
ENDPOINT_TRIES = 2

#: Seconds one request may take: a batch of completions on a served model answers in
#: seconds, so two minutes means the server is stuck, not busy.
ENDPOINT_TIMEOUT_S = 120


def hf_model_args(path: str) -> tuple[str, dict[str, Any]]:
    """lm-eval's `hf` back end on a local checkpoint folder, in float32."""
    return "hf", {"pretrained": path, "dtype": "float32"}


def endpoint_model_args(
    endpoint: str, served_model_name: str, tokenizer: str, seed: int
) -> tuple[str, dict[str, Any]]:
    """lm-eval's `local-completions` back end on an OpenAI-compatible completions URL.

    Requests are sent as token ids from the local tokenizer with a BOS token, which is what
    the `hf` back end scores; text requests would be tokenised again by the server and give
    different log-likelihoods for the same model.
    """
    return "local-completions", {
        "model": served_model_name,
        "base_url": endpoint,
        "tokenizer": tokenizer,
        "tokenizer_backend": "huggingface",
        "tokenized_requests": True,
        "add_bos_token": True,
        "max_retries": ENDPOINT_TRIES,
        "timeout": ENDPOINT_TIMEOUT_S,
        "seed": seed,
    }


def _absolute(files: Any, task: str) -> Any:
    """Relative data files made absolute against `catalog.DATA_ROOT` (str, list or dict)."""
    if isinstance(files, str):
        return files if "://" in files else str(catalog.DATA_ROOT / files)
    if isinstance(files, list):
        return [_absolute(f, task) for f in files]
    if isinstance(files, dict):
        return {split: _absolute(f, task) for split, f in files.items()}
    raise CatalogError(f"task {task!r}: dataset_kwargs.data_files must be a path, list or mapping")


def task_overrides(info: TaskInfo, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields that make a task read its data from absolute local paths.

    Args:
        info: The task, from the catalog.
        files: Split name -> local file, replacing the task's own data source; None keeps it
            (relative `data_files` are made absolute, a hub dataset stays a hub dataset).
    """
    config = info.config
    if files is None:
        kwargs = dict(config.get("dataset_kwargs") or {})
        if "data_files" not in kwargs:
            return {}
        kwargs["data_files"] = _absolute(kwargs["data_files"], info.name)
        return {"dataset_kwargs": kwargs}
    if not files:
        raise CatalogError(f"data files for {info.name!r}: give at least one split -> file")
    suffixes = {Path(f).suffix for f in files.values()}
    builders = {_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise CatalogError(
            f"data files for {info.name!r} ({', '.join(files.values())}): use one format "
            f"for all splits, named by suffix: {', '.join(_BUILDERS)}"
        )
    overrides: dict[str, Any] = {
        "dataset_path": builders.pop(),
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {s: str(Path(f).resolve()) for s, f in files.items()}},
    }
    for key in _SPLIT_KEYS:
        if config.get(key) is not None and config[key] not in files:
            overrides[key] = None
    evaluated = [config.get(k) for k in ("test_split", "validation_split") if config.get(k)]
    if not any(split in files for split in evaluated):
        raise CatalogError(
            f"data files for {info.name!r} give splits {sorted(files)}, but the task evaluates "
            f"on {' or '.join(map(repr, evaluated)) or '(no split)'}; name the file by that split"
        )
    return overrides


def suite_spec(name: str, data_files: DataFiles | None = None) -> dict[str, Any]:
    """The suite as an inline lm-eval group whose tasks carry their data overrides."""
    info = catalog.suite(name)
    members = catalog.suite_tasks(name)
    data_files = data_files or {}
    unknown = sorted(set(data_files) - set(info.tasks))
    if unknown:
        raise CatalogError(
            f"data files given for {', '.join(map(repr, unknown))}, which suite {name!r} does "
            f"not run; its tasks are {', '.join(info.tasks)}"
        )
    raw = catalog.load_yaml(info.path)
    group: dict[str, Any] = {k: raw[k] for k in _GROUP_KEYS if k in raw}
    group["group"] = name
    group["task"] = [{"task": t.name, **task_overrides(t, data_files.get(t.name))} for t in members]
    return group


def run_suite(
    suite: str,
    model: str,
    model_args: dict[str, Any],
    *,
    batch_size: int = 1,
    seed: int = 1234,
    limit: int | None = None,
    data_files: DataFiles | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a model on a suite; lm-eval's results, per-sample records under `samples`.

    Args:
        suite: A suite name from `evals/suites/`.
        model: lm-eval back end (`hf`, `local-completions`).
        model_args: Its arguments, e.g. from `hf_model_args` or `endpoint_model_args`.
        batch_size: Requests per forward pass (or per API call).
        seed: Seeds Python, NumPy, torch and few-shot sampling alike.
        limit: At most this many documents per task; None for all.
        data_files: Per-task data overrides (task -> split -> local file).
        device: Torch device for the `hf` back end.
    """
    spec = suite_spec(suite, data_files)
    families = catalog.suite(suite).families

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=[str(p) for p in catalog.include_paths(families)], include_defaults=False
    )
    results = simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[spec],
        batch_size=batch_size,
        device=device,
        limit=limit,
        log_samples=True,
        task_manager=manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if results is None:  # only ranks other than 0 get None; this runs as one process
        raise RuntimeError("lm-eval returned no results on rank 0")
    return dict(results)


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON as lm-eval writes its own files (NumPy numbers and sets made plain)."""
    import json

    from lm_eval.utils import handle_non_serializable

    return json.dumps(value, default=handle_non_serializable, indent=indent, ensure_ascii=False)


def flat_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """`task/metric` -> value for every task and group, standard errors left out.

    A filter other than `none` stays in the name as lm-eval spells it
    (`gsm8k/exact_match,strict-match`), so two filters of one metric never collide.
    """
    flat: dict[str, float] = {}
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = metric if filter_name == "none" else key
            flat[f"{task}/{name}"] = float(value)
    return flat
