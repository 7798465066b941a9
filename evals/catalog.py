"""The eval catalog: which suites and tasks exist, read from their YAML files without lm-eval.

Release specs name suites, and are validated before anything is submitted; importing lm-eval
for that would cost seconds, so this module reads the task files itself (plain YAML, with
lm-eval's `include:` and `!function` understood) and answers in milliseconds.

Layout, in lm-eval's own conventions:

    evals/tasks/<family>/<task>.yaml    one folder per task family, variants via `include:`
    evals/suites/<suite>.yaml           an lm-eval group: `group: <suite>`, `task: [names]`
    evals/data/<family>/*.jsonl         the items the tasks read

A suite may also name tasks of lm-eval's built-in families (arc, hellaswag, ...): it lists
those families in `metadata.lm_eval_families`, and they are read from the installed lm-eval.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError

#: The `evals` package folder.
EVALS = Path(__file__).resolve().parent
TASKS = EVALS / "tasks"
SUITES = EVALS / "suites"

#: Relative `data_files` in task files are relative to this folder (the one holding `evals/`):
#: lm-eval resolves them against the working directory, so they also work from the repo root.
DATA_ROOT = EVALS.parent

#: Metrics lm-eval gives a task that declares none, by output type.
_DEFAULT_METRICS = {
    "multiple_choice": ["acc", "acc_norm"],
    "loglikelihood": ["perplexity", "acc"],
    "loglikelihood_rolling": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
    "generate_until": ["exact_match"],
}

#: Direction of lm-eval's registered metrics, for metric lists that leave it out.
_LOWER_IS_BETTER = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter"}


class CatalogError(LLMFlowError):
    """An unknown suite or task, or a task or suite file that cannot be read."""


@dataclass(frozen=True)
class TaskInfo:
    """What a release spec and a gate need to know about a task.

    Attributes:
        name: The task name (`task:` in its file).
        output_type: lm-eval's request kind: multiple_choice, generate_until, ...
        metrics: Metric name -> whether higher is better.
        version: `metadata.version`, bumped whenever items or scoring change.
        path: The task's YAML file.
        config: The task file with its includes merged in (functions left as strings).
    """

    name: str
    output_type: str
    metrics: dict[str, bool]
    version: float | int | str | None
    path: Path
    config: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SuiteInfo:
    """A suite: an lm-eval group of tasks, and the built-in lm-eval families it draws on."""

    name: str
    tasks: list[str]
    families: list[str]
    version: float | int | str | None
    path: Path


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps lm-eval's `!function module.name` tags as plain strings."""


_Loader.add_constructor("!function", lambda loader, node: str(loader.construct_scalar(node)))  # type: ignore[arg-type]


def load_yaml(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """A task or suite file with its `include:` files merged in (its own keys win), as lm-eval."""
    path = path.resolve()
    if path in _seen:
        raise CatalogError(f"{path}: `include:` cycle; remove the include that leads back here")
    try:
        with path.open() as fh:
            data = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read it as YAML ({exc})") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping of task fields, got {type(data).__name__}")
    includes = data.pop("include", None)
    if includes is None:
        return data
    merged: dict[str, Any] = {}
    for include in includes if isinstance(includes, list) else [includes]:
        included = load_yaml(path.parent / include, _seen | {path})
        included.pop("task_list", None)
        merged.update(included)
    merged.update(data)
    return merged


def lm_eval_tasks_dir() -> Path:
    """lm-eval's built-in task folder, found without importing lm-eval (which takes seconds)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError(
            "lm-eval is not installed, so its built-in task families cannot be read; "
            "install llmflow with the eval extra: pip install 'llmflow[eval]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def family_dirs(families: list[str] | tuple[str, ...]) -> list[Path]:
    """The folders of built-in lm-eval task families (`arc`, `hellaswag`, ...)."""
    if not families:
        return []
    root = lm_eval_tasks_dir()
    folders = []
    for family in families:
        folder = root / family
        if not folder.is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise CatalogError(
                f"lm-eval family {family!r}: no folder {folder}; {_hint(family, known)}"
            )
        folders.append(folder)
    return folders


def include_paths(families: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Folders for lm-eval's `TaskManager(include_path=...)`: ours, and built-in families.

    With `include_defaults=False` lm-eval then indexes these few folders instead of its
    hundreds of built-in ones (about 11 s of start-up instead of 29 s).
    """
    return [TASKS, SUITES, *family_dirs(families)]


def _metrics(config: dict[str, Any], path: Path) -> dict[str, bool]:
    listed = config.get("metric_list")
    if listed is None:
        names = _DEFAULT_METRICS.get(str(config.get("output_type")), [])
        return {name: name not in _LOWER_IS_BETTER for name in names}
    metrics = {}
    for entry in listed:
        if not isinstance(entry, dict) or "metric" not in entry:
            raise CatalogError(f"{path}: metric_list entries need a `metric:` name, got {entry!r}")
        name = str(entry["metric"])
        metrics[name] = bool(entry.get("higher_is_better", name not in _LOWER_IS_BETTER))
    return metrics


def _task_infos(folder: Path, strict: bool = True) -> dict[str, TaskInfo]:
    """Tasks defined below a folder; `strict=False` skips unreadable files, as lm-eval does."""
    found: dict[str, TaskInfo] = {}
    for path in sorted(folder.glob("**/*.yaml")):
        try:
            config = load_yaml(path)
        except CatalogError:
            if strict:
                raise
            continue
        name = config.get("task")
        if not isinstance(name, str) or "group" in config:
            continue  # a group, or a template that other files include
        if name in found:
            raise CatalogError(f"{path}: task {name!r} is also defined in {found[name].path}")
        found[name] = TaskInfo(
            name=name,
            output_type=str(config.get("output_type", "generate_until")),
            metrics=_metrics(config, path),
            version=(config.get("metadata") or {}).get("version"),
            path=path,
            config=config,
        )
    return found


def tasks(families: list[str] | tuple[str, ...] = ()) -> dict[str, TaskInfo]:
    """Our tasks (`evals/tasks/`), plus those of the named built-in lm-eval families."""
    found = _task_infos(TASKS)
    for folder in family_dirs(families):
        for name, info in _task_infos(folder, strict=False).items():
            found.setdefault(name, info)
    return found


def suite_infos() -> dict[str, SuiteInfo]:
    """Every suite in `evals/suites/`, by name."""
    found: dict[str, SuiteInfo] = {}
    for path in sorted(SUITES.glob("*.yaml")):
        config = load_yaml(path)
        name, members = config.get("group"), config.get("task")
        if not isinstance(name, str) or not isinstance(members, list):
            raise CatalogError(f"{path}: a suite needs `group: <name>` and a `task:` list")
        if not all(isinstance(m, str) for m in members):
            raise CatalogError(f"{path}: suite tasks must be task names, got {members!r}")
        metadata = config.get("metadata") or {}
        found[name] = SuiteInfo(
            name=name,
            tasks=list(members),
            families=list(metadata.get("lm_eval_families", [])),
            version=metadata.get("version"),
            path=path,
        )
    return found


def suites() -> dict[str, list[str]]:
    """Suite name -> the names of its tasks."""
    return {name: info.tasks for name, info in suite_infos().items()}


def suite(name: str) -> SuiteInfo:
    """One suite, or an error that lists the suites there are."""
    known = suite_infos()
    if name not in known:
        raise CatalogError(
            f"eval suite {name!r} does not exist; {_hint(name, sorted(known))} "
            f"(suites are the group files in {SUITES})"
        )
    return known[name]


def suite_tasks(name: str) -> list[TaskInfo]:
    """The tasks of a suite, in its order; unknown suite or task names are errors."""
    info = suite(name)
    known = tasks(info.families)
    missing = [t for t in info.tasks if t not in known]
    if missing:
        hints = "; ".join(f"{t!r}: {_hint(t, sorted(known))}" for t in missing)
        raise CatalogError(
            f"suite {name!r} ({info.path}) names unknown tasks: {hints}. Tasks are the "
            f"`task:` names in {TASKS}/<family>/*.yaml, or in the lm-eval families the suite "
            "lists in metadata.lm_eval_families"
        )
    return [known[t] for t in info.tasks]


def _hint(name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    if guess:
        return f"did you mean {guess[0]!r}?"
    return f"known: {', '.join(known) if known else '(none)'}"
