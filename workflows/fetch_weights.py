"""The fetch-weights pipeline: copy a model's weights into the cluster's model cache.

One step, `fetch-weights`, that lists the source once, reuses a verified cache entry when
there is one, and otherwise downloads in parallel ranged chunks, resuming what an earlier
attempt left. It outputs the cache path and content digest for later steps to consume.
"""

from __future__ import annotations

from hera.workflows import DAG, Workflow

from steps.fetch import fetch_weights
from workflows._common import cache_volume, labels, model_parameters, param
from workflows.pipelines import Pipeline
from workflows.spec import ReleaseSpec

NAME = "fetch-weights"


def build(spec: ReleaseSpec) -> Workflow:
    """The fetch-weights Workflow for a release spec."""
    with Workflow(
        generate_name=f"{NAME}-{spec.model.name}-",
        namespace=spec.namespace,
        labels=labels(spec, NAME),
        entrypoint="main",
        service_account_name=spec.service_account,
        arguments=model_parameters(spec),
        volumes=[cache_volume(spec)],
    ) as workflow:
        with DAG(name="main"):
            fetch_weights(
                arguments={
                    "source": param(workflow, "source"),
                    "model-name": param(workflow, "model-name"),
                    "verify": param(workflow, "verify"),
                    "concurrency": param(workflow, "concurrency"),
                    "chunk-mib": param(workflow, "chunk-mib"),
                }
            )
    return workflow


PIPELINE = Pipeline(NAME, "fetch a model's weights into the model cache, verified", build)
