"""TrainJob (trainer.kubeflow.org/v1alpha1): Kubeflow Trainer v2's job, shaped by a runtime.

The runtime (`runtimeRef`, a ClusterTrainingRuntime such as `torch-distributed`) supplies
the pod template, so the model cache volume must be mounted at /models by that runtime; the
TrainJob carries the image, command, node count and per-node resources.
"""

from __future__ import annotations

from typing import Any

from workflows.spec import ReleaseSpec
from workflows.training.pod import TrainerCommand, job_metadata, resources, serialise, training_env

API_VERSION = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"

#: Argo conditions on the job's first (trainer) JobSet job.
SUCCESS_CONDITION = "status.jobsStatus.0.succeeded > 0"
FAILURE_CONDITION = "status.jobsStatus.0.failed > 0"


def build_trainjob(name: str, spec: ReleaseSpec, cmd: TrainerCommand, image: str) -> dict[str, Any]:
    """The TrainJob manifest for a finetune run."""
    ft = cmd.finetune
    env = serialise(training_env(spec.storage.credentials_secret))
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
                "env": env,
                "numNodes": ft.replicas,
                "numProcPerNode": ft.procs_per_replica,
                "resourcesPerNode": serialise(resources(ft)),
            },
        },
    }
    if ft.active_deadline_seconds:
        manifest["spec"]["activeDeadlineSeconds"] = ft.active_deadline_seconds
    return manifest
