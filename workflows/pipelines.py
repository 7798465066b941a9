"""The pipeline registry: every module of `workflows` that defines `PIPELINE` is a pipeline.

Discovery (not a hand-kept list) is what lets the golden tests, `lint` and the CLI cover a new
pipeline the moment its module exists.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from hera.workflows import Workflow

from workflows.exceptions import PipelineNotFoundError
from workflows.spec import ReleaseSpec


@dataclass(frozen=True)
class Pipeline:
    """A named pipeline and how to build its Argo Workflow from a release spec.

    Attributes:
        name: The kebab-case name used on the command line (`fetch-weights`).
        summary: One line for `--help` and listings.
        build: Builds the Hera Workflow for a spec; pure, no I/O.
    """

    name: str
    summary: str
    build: Callable[[ReleaseSpec], Workflow]


def discover() -> dict[str, Pipeline]:
    """All pipelines, by name."""
    import workflows

    found: dict[str, Pipeline] = {}
    for info in pkgutil.iter_modules(workflows.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"workflows.{info.name}")
        pipeline = getattr(module, "PIPELINE", None)
        if isinstance(pipeline, Pipeline):
            found[pipeline.name] = pipeline
    return dict(sorted(found.items()))


def get_pipeline(name: str) -> Pipeline:
    """The pipeline called `name`.

    Raises:
        PipelineNotFoundError: naming the known pipelines.
    """
    pipelines = discover()
    if name not in pipelines:
        known = ", ".join(pipelines) or "none"
        raise PipelineNotFoundError(f"no pipeline named {name!r}; known pipelines: {known}")
    return pipelines[name]
