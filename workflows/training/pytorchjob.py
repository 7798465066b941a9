"""PyTorchJob (kubeflow.org/v1): a Master and Workers, each pod one torchrun node.

Defaults and why:
- restartPolicy OnFailure: a crashed process restarts in its pod and resumes from the last
  checkpoint in S3, rather than failing the job on the first hiccup;
- backoffLimit from the spec (3): bounded restarts, then the job fails and says why;
- cleanPodPolicy Running: finished pods stay for their logs, stragglers are removed;
- ttlSecondsAfterFinished one day: the job object does not pile up forever;
- Workers sized `train-replicas - 1` from the workflow parameter, so a run may change the node
  count from the Argo UI; the operator refuses a Worker group of 0, so a one-node run is a
  manifest without one (`workers=False`), which the pipeline picks for `train-replicas` 1.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client import (
    V1ObjectMeta,
    V1PodSpec,
    V1PodTemplateSpec,
)

from workflows._common import TRAINING_ACCOUNT, cache_volume, service_account
from workflows.manifest_text import Raw
from workflows.spec import ReleaseSpec
from workflows.training.pod import (
    TrainerCommand,
    container,
    job_metadata,
    serialise,
    tolerations,
)

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"

#: Workers: every replica but the Master, from the run's `train-replicas` parameter.
WORKERS = Raw("{{=asInt(workflow.parameters['train-replicas']) - 1}}")

#: Argo conditions on the job, as the training operator reports replica outcomes.
SUCCESS_CONDITION = "status.replicaStatuses.Master.succeeded > 0"
FAILURE_CONDITION = "status.replicaStatuses.Master.failed > 0"


def build_pytorchjob(
    name: str, spec: ReleaseSpec, cmd: TrainerCommand, image: str, workers: bool = True
) -> dict[str, Any]:
    """The PyTorchJob manifest for a finetune run: a Master, and Workers unless one node."""
    ft = cmd.finetune
    pod = V1PodTemplateSpec(
        metadata=V1ObjectMeta(
            labels={"app.kubernetes.io/part-of": "llmflow", "llmflow.io/model": spec.model.name}
        ),
        spec=V1PodSpec(
            containers=[container(cmd, image)],
            volumes=[cache_volume(spec).model_dump(by_alias=True, exclude_none=True)],
            node_selector=ft.node_pool.node_selector or None,
            tolerations=tolerations(ft) or None,
            service_account_name=service_account(spec, TRAINING_ACCOUNT),  # bound to no Role
        ),
    )
    template = serialise(pod)
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}
    }
    if workers:
        replicas["Worker"] = {
            "replicas": WORKERS,
            "restartPolicy": "OnFailure",
            "template": copy.deepcopy(template),  # no YAML anchors in the rendered manifest
        }
    run_policy: dict[str, Any] = {
        "backoffLimit": ft.backoff_limit,
        "cleanPodPolicy": "Running",
        "ttlSecondsAfterFinished": 86400,
    }
    if ft.active_deadline_seconds:
        run_policy["activeDeadlineSeconds"] = ft.active_deadline_seconds
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": job_metadata(name, spec),
        "spec": {
            "nprocPerNode": str(ft.procs_per_replica),
            "pytorchReplicaSpecs": replicas,
            "runPolicy": run_policy,
        },
    }
