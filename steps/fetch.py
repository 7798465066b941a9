"""The `fetch-weights` step: bring a model's weights into the node's cache and say where they are.

Runs in a pod as
    python -m hera.workflows.runner -e steps.fetch:fetch_weights <inputs.json>
and outside a workflow it is an ordinary function:
    fetch_weights(source="s3://bucket/models/tiny", model_name="tiny", cache_root="/tmp/cache")
"""

import logging
from typing import Annotated, Literal

from hera.workflows import Parameter, script
from hera.workflows.io import Output
from hera.workflows.models import VolumeMount

from steps._hera import CACHE_MOUNT, CACHE_VOLUME, S3_ENV
from steps.weights.checksum import MiB
from steps.weights.fetch import fetch_model


class FetchedWeights(Output):
    """Where the weights are, and what the fetch did."""

    path: Annotated[str, Parameter(name="path", description="cache folder holding the model")]
    digest: Annotated[str, Parameter(name="digest", description="content digest sha256:<hex>")]
    cache_hit: Annotated[bool, Parameter(name="cache-hit", description="nothing was downloaded")]
    downloaded_bytes: Annotated[int, Parameter(name="downloaded-bytes")]


@script(
    env=S3_ENV,
    volume_mounts=[VolumeMount(name=CACHE_VOLUME, mount_path=CACHE_MOUNT)],
)
def fetch_weights(
    source: Annotated[str, Parameter(name="source", description="s3:// or file:// URI")],
    model_name: Annotated[str, Parameter(name="model-name", description="cache folder name")],
    cache_root: Annotated[str, Parameter(name="cache-root")] = CACHE_MOUNT,
    verify: Annotated[Literal["stat", "full"], Parameter(name="verify")] = "stat",
    concurrency: Annotated[int, Parameter(name="concurrency")] = 16,
    chunk_mib: Annotated[int, Parameter(name="chunk-mib")] = 8,
) -> FetchedWeights:
    """Fetch `source` into `cache_root/model_name/<digest>/`, verified; reuse it when cached."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("botocore").setLevel(logging.WARNING)
    result = fetch_model(
        source,
        cache_root,
        model_name,
        verify=verify,
        concurrency=concurrency,
        chunk_size=chunk_mib * MiB,
    )
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
