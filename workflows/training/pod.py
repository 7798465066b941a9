"""The training container, shared by PyTorchJob and TrainJob: command, env, resources, volumes.

Built from the Kubernetes client's typed models and serialised the way the API expects, so
field names and types are the upstream ones, not YAML typed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import (
    ApiClient,
    V1Container,
    V1EnvVar,
    V1EnvVarSource,
    V1ResourceRequirements,
    V1SecretKeySelector,
    V1Toleration,
    V1VolumeMount,
)

from steps._hera import CACHE_MOUNT, CACHE_VOLUME
from steps.train_knobs import ORIGINS, PROGRAM_KNOBS
from workflows.spec import FinetuneSpec, ReleaseSpec

#: The container name the training operator looks for in PyTorchJob pods.
CONTAINER_NAME = "pytorch"

_S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION")

#: The Secret the job's containers read S3 settings from: the run's `s3-secret` parameter, so
#: a run that names another Secret moves the training job along with the fetch step.
S3_SECRET = "{{workflow.parameters.s3-secret}}"


def knob(parameter: str) -> str:
    """A workflow parameter's value, as Argo fills it into the job manifest at run time."""
    return f"{{{{workflow.parameters.{parameter}}}}}"


@dataclass(frozen=True)
class TrainerCommand:
    """What every training process runs: `torchrun -m steps.train` and its flags.

    The knobs a run may change (`steps.train_knobs`) are read from workflow parameters, so a
    run started from the Argo UI trains with what was typed there; the rest comes from the spec.
    """

    model: str
    data: str
    output: str
    finetune: FinetuneSpec
    extra_args: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        """Torchrun picks nodes, rank and master from the operator's PET_* variables."""
        return ["torchrun", "-m", "steps.train"]

    def args(self) -> list[str]:
        """Flags of steps.train."""
        ft = self.finetune
        knobs = [
            arg
            for name in PROGRAM_KNOBS
            for arg in ("--" + name.replace("_", "-"), knob(ORIGINS[name][0]))
        ]
        return [
            "--model", self.model,
            "--data", self.data,
            "--output", self.output,
            *knobs,
            "--checkpoint-every", str(ft.checkpoint_every),
            "--dtype", "bfloat16" if ft.gpus_per_replica else "float32",
            *self.extra_args,
        ]  # fmt: skip


def s3_env(secret: str) -> list[V1EnvVar]:
    """S3 settings from a Secret reference; optional, so IAM roles work without keys."""
    return [
        V1EnvVar(
            name=key,
            value_from=V1EnvVarSource(
                secret_key_ref=V1SecretKeySelector(name=secret, key=key, optional=True)
            ),
        )
        for key in _S3_KEYS
    ]


def training_env(secret: str) -> list[V1EnvVar]:
    """Env of every training process: S3 settings, one BLAS thread, unbuffered logs."""
    return [
        *s3_env(secret),
        # One BLAS thread per process; torch on shared CPUs is many times slower otherwise.
        V1EnvVar(name="OMP_NUM_THREADS", value="1"),
        V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]


def job_metadata(name: str, spec: ReleaseSpec) -> dict[str, Any]:
    """Metadata of a training job object."""
    return {
        "name": name,
        "namespace": spec.namespace,
        "labels": {"app.kubernetes.io/part-of": "llmflow", "llmflow.io/model": spec.model.name},
    }


def resources(finetune: FinetuneSpec) -> V1ResourceRequirements:
    """Requests and limits per replica; GPUs as the pool's extended resource."""
    requests: dict[str, str] = {"cpu": finetune.cpu, "memory": finetune.memory}
    limits: dict[str, str] = {"memory": finetune.memory}
    if finetune.gpus_per_replica:
        gpus = str(finetune.gpus_per_replica)
        requests[finetune.node_pool.gpu_resource] = gpus
        limits[finetune.node_pool.gpu_resource] = gpus
    return V1ResourceRequirements(requests=requests, limits=limits)


def cache_mount() -> V1VolumeMount:
    """The model cache, mounted where the fetch step put the weights."""
    return V1VolumeMount(name=CACHE_VOLUME, mount_path=CACHE_MOUNT)


def container(cmd: TrainerCommand, image: str) -> V1Container:
    """The training container, with the model cache mounted where the fetch step put it."""
    return V1Container(
        name=CONTAINER_NAME,
        image=image,
        command=cmd.command(),
        args=cmd.args(),
        env=training_env(S3_SECRET),
        resources=resources(cmd.finetune),
        volume_mounts=[cache_mount()],
    )


def tolerations(finetune: FinetuneSpec) -> list[V1Toleration]:
    """The node pool's tolerations."""
    return [
        V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        for t in finetune.node_pool.tolerations
    ]


def serialise(model: Any) -> Any:
    """A Kubernetes client model as the API's JSON (camelCase, no nulls)."""
    return ApiClient().sanitize_for_serialization(model)
