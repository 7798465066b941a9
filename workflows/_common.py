"""Pieces every pipeline shares: workflow parameters from the release spec, the cache volume.

Parameters carry descriptions and enums so the Argo UI shows a usable form, and their values
come from the spec, so the CLI, the UI, schedules and tags all start the same run.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import Parameter, Workflow
from hera.workflows.models import (
    HostPathVolumeSource,
    Metadata,
    PersistentVolumeClaimVolumeSource,
    ValueFrom,
    Volume,
)

from steps._hera import CACHE_VOLUME
from steps._retry import FETCH_RETRY
from workflows.spec import ReleaseSpec


def model_parameters(spec: ReleaseSpec) -> list[Parameter]:
    """Parameters naming the image, the model, its source, the S3 and Hub Secrets, the cache.

    The fetch's retry settings are parameters too (`steps/_retry.py`), so a run from the Argo
    UI can wait longer for a store that is down.
    """
    cache = spec.model.cache
    return [
        Parameter(name="image", value=spec.image, description="image every step runs in"),
        Parameter(name="model-name", value=spec.model.name, description="the model's name"),
        Parameter(
            name="source",
            value=spec.model.source,
            description="where the weights come from: s3://bucket/prefix, "
            "hf://org/name@revision or file:///path",
        ),
        Parameter(
            name="s3-secret",
            value=spec.storage.credentials_secret,
            description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally "
            "AWS_ENDPOINT_URL, AWS_REGION",
        ),
        Parameter(
            name="hf-secret",
            value=spec.storage.hf_token_secret,
            description="Secret with HF_TOKEN (private and gated models) and optionally "
            "HF_ENDPOINT (a Hub mirror), for hf:// sources",
        ),
        Parameter(
            name="verify",
            value=cache.verify,
            enum=["stat", "full"],
            description="cache hit check: stat (sizes and times) or full (re-hash every file)",
        ),
        Parameter(
            name="concurrency",
            value=str(cache.concurrency),
            description="parallel ranged downloads",
        ),
        Parameter(
            name="chunk-mib",
            value=str(cache.chunk_mib),
            description="size of one ranged download (MiB)",
        ),
        Parameter(
            name=FETCH_RETRY.limit,
            value=str(cache.retry.limit),
            description="retries of a fetch that failed for a reason that can heal (the store "
            "was down); bad credentials or a missing bucket are never retried",
        ),
        Parameter(
            name=FETCH_RETRY.backoff,
            value=cache.retry.backoff,
            description="wait before the first retry of a fetch (10s, 1m)",
        ),
        Parameter(
            name=FETCH_RETRY.factor,
            value=str(cache.retry.factor),
            description="each further wait is the previous one times this (an integer)",
        ),
        Parameter(
            name=FETCH_RETRY.cap,
            value=cache.retry.cap,
            description="the longest wait between two attempts of a fetch",
        ),
    ]


def cache_volume(spec: ReleaseSpec) -> Volume:
    """The model cache: a PersistentVolumeClaim, or a node-local hostPath."""
    cache = spec.model.cache
    if cache.volume == "host":
        return Volume(
            name=CACHE_VOLUME,
            host_path=HostPathVolumeSource(path=cache.host_path, type="DirectoryOrCreate"),
        )
    return Volume(
        name=CACHE_VOLUME,
        persistent_volume_claim=PersistentVolumeClaimVolumeSource(claim_name=cache.claim_name),
    )


#: The account suffix of vLLM pods (`<service_account>-serving`): bound to no Role.
SERVING_ACCOUNT = "serving"

#: The account suffix of training job pods (`<service_account>-training`): bound to no Role.
TRAINING_ACCOUNT = "training"


def service_account(spec: ReleaseSpec, component: str) -> str:
    """The service account a pipeline or component runs as: `<service_account>-<component>`.

    Each pipeline has its own (`llmflow-deploy`), holding only what its resource templates
    do (`workflows/rbac.py` derives the Role); serving and training pods have theirs, with
    no Role at all.
    """
    return f"{spec.service_account}-{component}"


def labels(spec: ReleaseSpec, pipeline: str) -> dict[str, str]:
    """Labels that let `kubectl`/the Argo UI filter runs by pipeline and model."""
    return {
        "app.kubernetes.io/part-of": "llmflow",
        "llmflow.io/pipeline": pipeline,
        "llmflow.io/model": spec.model.name,
    }


def param(workflow: Workflow, name: str) -> str:
    """The expression for a workflow parameter, checked to exist (`{{workflow.parameters.x}}`)."""
    return str(workflow.get_parameter(name).value)


def new_workflow(spec: ReleaseSpec, pipeline: str, arguments: list[Parameter]) -> Workflow:
    """A pipeline's Workflow: named after pipeline and model, entrypoint `main`, cache volume.

    It runs as the pipeline's own service account, and its pods carry the workflow's labels
    (`podMetadata`: Argo does not copy a Workflow's labels to its pods), so NetworkPolicies
    can tell the deploy pipeline's probe pods apart.
    """
    return Workflow(
        generate_name=f"{pipeline}-{spec.model.name}-",
        namespace=spec.namespace,
        labels=labels(spec, pipeline),
        pod_metadata=Metadata(labels=labels(spec, pipeline)),
        entrypoint="main",
        service_account_name=service_account(spec, pipeline),
        arguments=arguments,
        volumes=[cache_volume(spec)],
    )


def main_input(name: str) -> str:
    """The expression for an input of a pipeline's `main` template (`{{inputs.parameters.x}}`).

    A pipeline's `main` takes as inputs the values that change when another pipeline calls it
    (the release passes the fine-tuned checkpoint as `candidate`); run alone, Argo fills
    them from the workflow's arguments, which reach the entrypoint's inputs by name.
    """
    return f"{{{{inputs.parameters.{name}}}}}"


def main_outputs(outputs: dict[str, str]) -> list[Parameter]:
    """`main`'s outputs: name -> a task output (`{{tasks.x.outputs.parameters.y}}`).

    They are also the workflow's outputs (`globalName`), so a caller of the Python API
    reads them from the finished workflow, and a release that composes `main` gets them
    as task outputs.
    """
    return [
        Parameter(name=name, value_from=ValueFrom(parameter=source), global_name=name)
        for name, source in outputs.items()
    ]


def fetch_model(
    workflow: Workflow,
    source: str = "source",
    name: str | None = None,
    source_value: str | None = None,
) -> Any:
    """The fetch-weights task of a DAG, wired to the workflow's model parameters.

    Args:
        workflow: The workflow whose parameters the task reads.
        source: The workflow parameter holding the weights' URI (evaluate fetches two).
        name: The task's name; Hera's default (`fetch-weights`) when None.
        source_value: The URI as an expression, instead of the `source` parameter (a
            `main` input).
    """
    from steps.fetch import fetch_weights

    arguments = {"source": source_value or param(workflow, source)}
    arguments.update(
        {key: param(workflow, key) for key in ("model-name", "verify", "concurrency", "chunk-mib")}
    )
    if name is None:
        return fetch_weights(arguments=arguments)
    return fetch_weights(name=name, arguments=arguments)
