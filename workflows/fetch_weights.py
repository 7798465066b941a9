"""The fetch-weights pipeline: copy a model's weights into the cluster's model cache.

One step, `fetch-weights`, that lists the source once, reuses a verified cache entry when
there is one, and otherwise downloads in parallel ranged chunks, resuming what an earlier
attempt left. It outputs the cache path and content digest for later steps to consume.
"""

from __future__ import annotations

from hera.workflows import DAG, Workflow

from workflows._common import fetch_model, main_outputs, model_parameters, new_workflow
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec

NAME = "fetch-weights"


def build(spec: ReleaseSpec) -> Workflow:
    """The fetch-weights Workflow for a release spec."""
    with new_workflow(spec, NAME, model_parameters(spec)) as workflow:
        outputs = {
            name: f"{{{{tasks.fetch-weights.outputs.parameters.{name}}}}}"
            for name in ("path", "digest", "cache-hit")
        }
        with DAG(name="main", outputs=main_outputs(outputs)):
            fetch_model(workflow)
    return workflow


PIPELINE = Pipeline(NAME, "fetch a model's weights into the model cache, verified", build)
