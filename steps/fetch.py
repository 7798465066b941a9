"""The `fetch-weights` step: bring a model's weights into the node's cache and say where they are.

Runs in a pod as
    python -m hera.workflows.runner -e steps.fetch:fetch_weights <inputs.json>
and outside a workflow it is an ordinary function:
    fetch_weights(source="s3://bucket/models/tiny", model_name="tiny", cache_root="/tmp/cache")

A failure the step understands (`steps.errors`) is returned, not raised: its `exit_code` is the
one the runner exits with (75 can heal, 66 and 76 cannot), and its message is logged last, so
it ends the log and the node's message. Argo retries the step on the codes that can heal
(`steps/_retry.py`); each attempt resumes from the chunks earlier ones finished.
"""

import logging
from typing import Annotated, Literal

from hera.workflows import Parameter, script
from hera.workflows.io import Output
from hera.workflows.models import VolumeMount

from steps._hera import CACHE_MOUNT, CACHE_VOLUME, HF_ENV, S3_ENV, step_logger
from steps._retry import FETCH_RETRY, PERMANENT_EXIT_CODES
from steps.errors import StepError
from steps.weights.checksum import MiB
from steps.weights.fetch import fetch_model


class FetchedWeights(Output):
    """Where the weights are, and what the fetch did."""

    path: Annotated[str, Parameter(name="path", description="cache folder holding the model")]
    digest: Annotated[str, Parameter(name="digest", description="content digest sha256:<hex>")]
    cache_hit: Annotated[bool, Parameter(name="cache-hit", description="nothing was downloaded")]
    downloaded_bytes: Annotated[int, Parameter(name="downloaded-bytes")]


@script(
    env=S3_ENV + HF_ENV,
    volume_mounts=[VolumeMount(name=CACHE_VOLUME, mount_path=CACHE_MOUNT)],
    retry_strategy=FETCH_RETRY.strategy(),
)
def fetch_weights(
    source: Annotated[str, Parameter(name="source", description="s3://, hf:// or file:// URI")],
    model_name: Annotated[str, Parameter(name="model-name", description="cache folder name")],
    cache_root: Annotated[str, Parameter(name="cache-root")] = CACHE_MOUNT,
    verify: Annotated[Literal["stat", "full"], Parameter(name="verify")] = "stat",
    concurrency: Annotated[int, Parameter(name="concurrency")] = 16,
    chunk_mib: Annotated[int, Parameter(name="chunk-mib")] = 8,
) -> FetchedWeights:
    """Fetch `source` into `cache_root/model_name/<digest>/`, verified; reuse it when cached."""
    # httpx2: huggingface_hub's, a line per request.
    step_logger(__name__, quiet=("botocore", "httpx2"))
    try:
        result = fetch_model(
            source,
            cache_root,
            model_name,
            verify=verify,
            concurrency=concurrency,
            chunk_size=chunk_mib * MiB,
        )
    except StepError as exc:
        return _failed(exc)
    logging.getLogger(__name__).info(
        "%s: %s at %s (%d files, %.1f MB, %s, %.2f s)",
        model_name,
        result.digest,
        result.path,
        result.files,
        result.total_bytes / 1e6,
        "cache hit" if result.cache_hit else f"{result.downloaded_bytes / 1e6:.1f} MB downloaded",
        result.seconds,
    )
    return FetchedWeights(
        path=str(result.path),
        digest=result.digest,
        cache_hit=result.cache_hit,
        downloaded_bytes=result.downloaded_bytes,
    )


def _failed(error: StepError) -> FetchedWeights:
    """What a fetch stopped by `error` returns: the error's exit code and message, no weights.

    Returned, not raised: an exception ends Hera's runner with exit code 1 whatever it is, and
    a `SystemExit` would skip the output files the runner writes (a missing one is an error of
    Argo's wait container beside the real one). Returned, the outputs are written empty and
    the runner exits with `exit_code`. The message is logged last, in one line with the code,
    so the log's tail, and with it the node's message, ends with it; `result` stays empty, as
    the runner prints it on stdout, whose lines reach the log in no set order with stderr's.
    """
    permanent = error.exit_code in PERMANENT_EXIT_CODES
    kind = "cannot heal: not retried" if permanent else "may heal: retried while attempts are left"
    logging.getLogger(__name__).error(
        "fetch failed with exit code %d (%s): %s", error.exit_code, kind, error
    )
    return FetchedWeights(
        exit_code=error.exit_code,
        result="",
        path="",
        digest="",
        cache_hit=False,
        downloaded_bytes=0,
    )
