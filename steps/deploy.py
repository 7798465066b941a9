"""The `plan-rollout` step: decide how a new version reaches users.

Three cases, decided from whether a stable Deployment exists and which version it serves:

* `first`: no stable version yet (the model's first release): deploy it directly;
* `canary`: a different version is stable: deploy the new one beside it and shift traffic in
  judged stages;
* `current`: the same weights are already stable: nothing to do.

The version label is a digest of what serves: the weights' content digest and the server's
configuration (image, vLLM arguments, GPUs), 12 hex digits. The same weights served the same
way always carry the same version, in the Deployment's labels and in every Prometheus series
scraped from it, whichever run deployed them; a configuration change alone (say, a new
`--max-num-seqs`) is a new version and goes through the canary like new weights.

    python -m hera.workflows.runner -e steps.deploy:plan_rollout <inputs.json>
"""

import hashlib
from typing import Annotated

from hera.workflows import Parameter, script
from hera.workflows.io import Output

from steps.errors import StepError

#: Hex digits of the content digest kept in the version label.
VERSION_DIGITS = 12


class RolloutPlan(Output):
    """How the rollout proceeds."""

    mode: Annotated[str, Parameter(name="mode", description="first, canary or current")]
    version: Annotated[str, Parameter(name="version", description="the new version's label")]
    model_path: Annotated[
        str, Parameter(name="model-path", description="the weights as serving pods see them")
    ]


def serving_path(model: str, digest: str) -> str:
    """Where a serving pod finds the weights: the cache volume's entry for the digest.

    The path is the pods' (the cache volume mounted at /models), not the fetch step's own:
    the step may see the volume elsewhere (a local run maps it to a folder).
    """
    from pathlib import PurePosixPath

    from steps._hera import CACHE_MOUNT
    from steps.weights.cache import CacheEntry

    return str(CacheEntry(PurePosixPath(CACHE_MOUNT), model, digest).path)  # type: ignore[arg-type]


def version_label(digest: str, config: str = "") -> str:
    """The version label of weights (content digest `sha256:<hex>`) served with `config`."""
    hexdigits = digest.split(":", 1)[-1].lower()
    if len(hexdigits) < VERSION_DIGITS or any(c not in "0123456789abcdef" for c in hexdigits):
        raise StepError(
            f"digest {digest!r} is not sha256:<hex>: pass the `digest` output of fetch-weights"
        )
    both = hashlib.sha256(f"{hexdigits}\n{config}".encode()).hexdigest()
    return both[:VERSION_DIGITS]


@script()
def plan_rollout(
    digest: Annotated[str, Parameter(name="digest", description="content digest of the weights")],
    stable_status: Annotated[
        str, Parameter(name="stable-status", description="phase of the lookup of stable")
    ],
    stable_version: Annotated[
        str, Parameter(name="stable-version", description="version label of stable, if any")
    ] = "",
    config: Annotated[
        str, Parameter(name="config", description="the server's configuration, as JSON")
    ] = "",
    model: Annotated[str, Parameter(name="model-name", description="the model's name")] = "",
) -> RolloutPlan:
    """Choose first release, canary, or nothing to do."""
    from steps._hera import step_logger

    log = step_logger(__name__)
    version = version_label(digest, config)
    if stable_status != "Succeeded":
        mode = "first"
    elif stable_version == version:
        mode = "current"
    else:
        mode = "canary"
    log.info("rollout of version %s: %s (stable: %s)", version, mode, stable_version or "none")
    return RolloutPlan(mode=mode, version=version, model_path=serving_path(model, digest))
