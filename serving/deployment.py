"""The vLLM Deployment of one track, and the Argo conditions that say its rollout is done.

Built from the Kubernetes client's typed models and serialised the way the API expects, as the
training manifests are (`workflows/training/pod.py`). The weights are not downloaded here: the
pod mounts the model cache that the fetch-weights step filled, read-only, and vLLM loads the
model from a path inside it, offline.

Defaults and why:
- RollingUpdate with maxSurge 1 and maxUnavailable 0: a new pod is ready before an old one
  goes, so a version change never lowers capacity;
- a startupProbe sized to `serving.startup_seconds`: loading weights can take many minutes,
  and the liveness probe must not kill a pod that is still loading;
- progressDeadlineSeconds = startup budget + a margin for scheduling, node scale-up and the
  image pull, so a stuck rollout is reported (FAILED_CONDITION) instead of waited on forever;
- a non-root, no-privilege container with the RuntimeDefault seccomp profile: a network-facing
  server needs nothing more;
- no CPU limit (throttling a token generator only adds latency), memory request = limit (the
  pod is never the first to be OOM-killed on a busy node), GPUs as the pool's extended resource.
"""

from __future__ import annotations

import math
from typing import Any

from kubernetes.client import (
    V1Capabilities,
    V1Container,
    V1ContainerPort,
    V1Deployment,
    V1DeploymentSpec,
    V1DeploymentStrategy,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1ExecAction,
    V1HTTPGetAction,
    V1LabelSelector,
    V1Lifecycle,
    V1LifecycleHandler,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1PodSpec,
    V1PodTemplateSpec,
    V1Probe,
    V1ResourceRequirements,
    V1RollingUpdateDeployment,
    V1SeccompProfile,
    V1SecurityContext,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)

from serving.labels import object_name, pod_labels, selector, served_name, serving_of
from steps._hera import CACHE_MOUNT, CACHE_VOLUME
from workflows._common import SERVING_ACCOUNT, cache_volume, service_account
from workflows.spec import ReleaseSpec, ServingSpec
from workflows.training.pod import serialise

#: The serving container's name (`kubectl logs deploy/<name> -c vllm`).
CONTAINER_NAME = "vllm"

#: vLLM's OpenAI-compatible server.
COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]

#: vLLM answers 200 here once the model is loaded and the engine runs.
HEALTH_PATH = "/health"

#: Seconds between startup probes; failureThreshold is derived from `startup_seconds`.
STARTUP_PERIOD_SECONDS = 10

#: Time allowed beyond the model load for scheduling, GPU node scale-up and pulling the vLLM
#: image (several GiB): the rollout only counts as stuck after both.
PROGRESS_MARGIN_SECONDS = 900

#: Seconds a terminating pod sleeps before vLLM gets SIGTERM, so the gateway and Service stop
#: sending it new requests first (endpoint removal propagates asynchronously).
DRAIN_SECONDS = 10

#: Seconds vLLM has after SIGTERM to finish in-flight requests: long generations stream for
#: minutes at low throughput.
IN_FLIGHT_SECONDS = 120

#: A UID/GID with no meaning on the node; the vLLM image runs as any user given a writable HOME.
RUN_AS = 1000

#: Where the pod's writable scratch space is mounted; HOME points there (vLLM, Triton and torch
#: keep their caches under it).
SCRATCH_MOUNT = "/tmp"

#: /dev/shm per tensor-parallel rank: NCCL and PyTorch exchange tensors through it. A
#: memory-backed emptyDir counts against the pod's memory limit only as far as it is used.
SHM_PER_RANK_GIB = 2

#: Env of the server: never reach the Hugging Face Hub (the weights are local), never send
#: usage statistics from a cluster.
ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}

#: Argo failureCondition: the Deployment controller gave up (Progressing=False with reason
#: ProgressDeadlineExceeded). Argo's conditions are label selectors over gjson paths, which
#: cannot search a list by `type`, so the reason is checked at each index the Deployment's
#: conditions can have (Available, Progressing, ReplicaFailure; a condition moves to the end
#: when it changes). Argo fails the step when *any* failure requirement matches, unlike a
#: successCondition, whose requirements must all match.
FAILED_CONDITION = ", ".join(
    f"status.conditions.{i}.reason == ProgressDeadlineExceeded" for i in range(3)
)


def ready_condition(spec: ReleaseSpec) -> str:
    """Argo successCondition: the rollout finished and every replica is ready.

    All `serving.replicas` pods run the new template (`updatedReplicas`), no old pod is left
    (`replicas`), and all are ready and available. Argo conditions are label selectors on JSON
    paths (requirements joined by commas must all hold) and cannot compare two fields, so the
    replica count is the one the spec renders. The status is read right after the apply; in
    the moment before the controller sees a new template it still describes the old one.

    Raises:
        ValueError: the spec has no `serving` section.
    """
    n = serving_of(spec).replicas
    return ", ".join(
        f"status.{field} == {n}"
        for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )


def build_deployment(
    spec: ReleaseSpec, track: str, version: str, model_path: str
) -> dict[str, Any]:
    """The apps/v1 Deployment serving one track of the model with vLLM.

    Args:
        spec: The release spec; its `serving` section says how to serve.
        track: "stable" or "canary"; names the Deployment and selects its pods.
        version: The version served, a label value or an Argo expression
            (`{{inputs.parameters.version}}`); labels the pods and the Deployment.
        model_path: The weights' folder inside the model cache (under `/models`), or an Argo
            expression for it; passed to vLLM as `--model`.

    Raises:
        ValueError: the spec has no `serving` section, or the track is unknown.
    """
    serving = serving_of(spec)
    labels = pod_labels(spec, track, version)
    pod = V1PodTemplateSpec(
        metadata=V1ObjectMeta(labels=labels),
        spec=V1PodSpec(
            containers=[_container(spec, serving, model_path)],
            volumes=[
                cache_volume(spec).model_dump(by_alias=True, exclude_none=True),
                V1Volume(
                    name="dshm",
                    empty_dir=V1EmptyDirVolumeSource(
                        medium="Memory",
                        size_limit=f"{_tensor_parallel(serving) * SHM_PER_RANK_GIB}Gi",
                    ),
                ),
                V1Volume(name="scratch", empty_dir=V1EmptyDirVolumeSource()),
            ],
            node_selector=serving.node_pool.node_selector or None,
            tolerations=_tolerations(serving) or None,
            # Its own account, bound to no Role: the server needs no Kubernetes API, and no
            # token is mounted either.
            service_account_name=service_account(spec, SERVING_ACCOUNT),
            automount_service_account_token=False,
            enable_service_links=False,
            security_context=V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=RUN_AS,
                run_as_group=RUN_AS,
                seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
            ),
            termination_grace_period_seconds=DRAIN_SECONDS + IN_FLIGHT_SECONDS,
        ),
    )
    deployment = V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=V1ObjectMeta(
            name=object_name(spec, track), namespace=spec.namespace, labels=dict(labels)
        ),
        spec=V1DeploymentSpec(
            replicas=serving.replicas,
            selector=V1LabelSelector(match_labels=selector(spec, track)),
            strategy=V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            progress_deadline_seconds=serving.startup_seconds + PROGRESS_MARGIN_SECONDS,
            template=pod,
        ),
    )
    result: dict[str, Any] = serialise(deployment)
    return result


def vllm_args(spec: ReleaseSpec, model_path: str) -> list[str]:
    """Arguments of the vLLM server: model, served name, address, tensor parallelism, extras.

    Raises:
        ValueError: the spec has no `serving` section.
    """
    serving = serving_of(spec)
    return [
        "--model", model_path,
        "--served-model-name", served_name(spec),
        "--host", "0.0.0.0",
        "--port", str(serving.port),
        "--tensor-parallel-size", str(_tensor_parallel(serving)),
        *serving.vllm_args,
    ]  # fmt: skip


def startup_failure_threshold(serving: ServingSpec) -> int:
    """Startup probes allowed to fail: enough that period x threshold covers `startup_seconds`."""
    return math.ceil(serving.startup_seconds / STARTUP_PERIOD_SECONDS)


def _container(spec: ReleaseSpec, serving: ServingSpec, model_path: str) -> V1Container:
    health = V1HTTPGetAction(path=HEALTH_PATH, port="http")
    return V1Container(
        name=CONTAINER_NAME,
        image=serving.image,
        command=list(COMMAND),
        args=vllm_args(spec, model_path),
        ports=[V1ContainerPort(name="http", container_port=serving.port, protocol="TCP")],
        env=[
            *(V1EnvVar(name=key, value=value) for key, value in ENV.items()),
            V1EnvVar(name="HOME", value=SCRATCH_MOUNT),
        ],
        resources=_resources(serving),
        volume_mounts=[
            V1VolumeMount(name=CACHE_VOLUME, mount_path=CACHE_MOUNT, read_only=True),
            V1VolumeMount(name="dshm", mount_path="/dev/shm"),
            V1VolumeMount(name="scratch", mount_path=SCRATCH_MOUNT),
        ],
        # Loading may take up to startup_seconds; liveness and readiness start after it.
        startup_probe=V1Probe(
            http_get=health,
            period_seconds=STARTUP_PERIOD_SECONDS,
            timeout_seconds=5,
            failure_threshold=startup_failure_threshold(serving),
        ),
        # Out of the Service within ~15 s of failing health checks, back as soon as one passes.
        readiness_probe=V1Probe(
            http_get=health, period_seconds=5, timeout_seconds=5, failure_threshold=3
        ),
        # Restarted only after a minute without answers: a busy engine answers /health slowly.
        liveness_probe=V1Probe(
            http_get=health, period_seconds=15, timeout_seconds=10, failure_threshold=4
        ),
        lifecycle=V1Lifecycle(
            pre_stop=V1LifecycleHandler(_exec=V1ExecAction(command=["sleep", str(DRAIN_SECONDS)]))
        ),
        security_context=V1SecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS,
            run_as_group=RUN_AS,
            allow_privilege_escalation=False,
            capabilities=V1Capabilities(drop=["ALL"]),
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        ),
    )


def _resources(serving: ServingSpec) -> V1ResourceRequirements:
    requests: dict[str, str] = {"cpu": serving.cpu, "memory": serving.memory}
    limits: dict[str, str] = {"memory": serving.memory}
    if serving.gpus > 0:
        requests[serving.node_pool.gpu_resource] = str(serving.gpus)
        limits[serving.node_pool.gpu_resource] = str(serving.gpus)
    return V1ResourceRequirements(requests=requests, limits=limits)


def _tolerations(serving: ServingSpec) -> list[V1Toleration]:
    return [
        V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        for t in serving.node_pool.tolerations
    ]


def _tensor_parallel(serving: ServingSpec) -> int:
    """One tensor-parallel rank per GPU; a CPU pod is one rank."""
    return max(serving.gpus, 1)
