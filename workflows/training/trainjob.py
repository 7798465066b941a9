"""TrainJob (trainer.kubeflow.org/v1alpha1): Kubeflow Trainer v2's job, shaped by a runtime.

The runtime (`runtimeRef`, a ClusterTrainingRuntime such as `torch-distributed`) supplies the
pod template; the TrainJob carries the image, command, node count and per-node resources, and
patches into the runtime's `node` pods what a shipped runtime cannot know (`runtimePatches`,
Trainer 2.3): the model cache volume at /models, the node pool's selector and tolerations, and
the training service account. Without the patch, the stock `torch-distributed` pods would not
see the weights the fetch step cached.

Trainer v2 has no job-level restart budget: each node pod restarts in place (OnFailure) until
its Job's backoffLimit (6), so the spec's `backoff_limit` applies to PyTorchJob only.
"""

from __future__ import annotations

from typing import Any

from workflows._common import TRAINING_ACCOUNT, cache_volume, service_account
from workflows.manifest_text import Raw
from workflows.spec import ReleaseSpec
from workflows.training.pod import (
    S3_SECRET,
    TrainerCommand,
    cache_mount,
    job_metadata,
    resources,
    serialise,
    tolerations,
    training_env,
)

API_VERSION = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"

#: The replicated job and its container that the `torch-distributed` runtime trains in.
NODE = "node"

#: Who owns the runtime patch (`runtimePatches[].manager`).
PATCH_MANAGER = "llmflow.io/finetune"

#: Nodes, from the run's `train-replicas` parameter.
NODES = Raw("{{=asInt(workflow.parameters['train-replicas'])}}")

#: Argo conditions on the job's first (trainer) JobSet job. Argo fails a resource step when any
#: one failure requirement holds: a failed node Job, or the TrainJob's own Failed condition
#: (past activeDeadlineSeconds the controller deletes the JobSet, and jobsStatus stays as it
#: was last reported).
SUCCESS_CONDITION = "status.jobsStatus.0.succeeded > 0"
FAILURE_CONDITION = "status.jobsStatus.0.failed > 0,status.conditions.0.type == Failed"


def node_patch(spec: ReleaseSpec) -> dict[str, Any]:
    """The runtime patch of the `node` pods: cache volume, node pool, service account."""
    assert spec.finetune is not None
    ft = spec.finetune
    pod: dict[str, Any] = {
        "serviceAccountName": service_account(spec, TRAINING_ACCOUNT),  # bound to no Role
        "volumes": [cache_volume(spec).model_dump(by_alias=True, exclude_none=True)],
        "containers": [{"name": NODE, "volumeMounts": [serialise(cache_mount())]}],
    }
    if ft.node_pool.node_selector:
        pod["nodeSelector"] = dict(ft.node_pool.node_selector)
    if ft.node_pool.tolerations:
        pod["tolerations"] = serialise(tolerations(ft))
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}
                    ]
                }
            }
        },
    }


def build_trainjob(name: str, spec: ReleaseSpec, cmd: TrainerCommand, image: str) -> dict[str, Any]:
    """The TrainJob manifest for a finetune run."""
    ft = cmd.finetune
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": job_metadata(name, spec),
        "spec": {
            "runtimeRef": {
                "name": ft.runtime,
                "kind": "ClusterTrainingRuntime",
                "apiGroup": "trainer.kubeflow.org",
            },
            "trainer": {
                "image": image,
                "command": cmd.command(),
                "args": cmd.args(),
                "env": serialise(training_env(S3_SECRET)),
                "numNodes": NODES,
                "numProcPerNode": ft.procs_per_replica,
                "resourcesPerNode": serialise(resources(ft)),
            },
            "runtimePatches": [node_patch(spec)],
        },
    }
    if ft.active_deadline_seconds:
        manifest["spec"]["activeDeadlineSeconds"] = ft.active_deadline_seconds
    return manifest
