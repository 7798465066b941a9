"""TrainJob on one machine: Kubeflow Trainer v2's `torch-distributed` runtime as local processes.

What the Trainer controller and its JobSet would do for a TrainJob on the stock
`torch-distributed` ClusterTrainingRuntime (Trainer v2.3), done with one process per node:
- The runtime's single replicated job `node`, container `node`, with the TrainJob's image,
  command and args; `runtimePatches` add volumes, volume mounts, node selector and service
  account to the node pods (only the volumes and mounts matter on one machine).
- The torch plugin's env on every node, after the TrainJob's `trainer.env`: PET_NNODES
  (`numNodes`, default 1), PET_NPROC_PER_NODE (`numProcPerNode`, or for `auto` the CPU request
  rounded up), PET_NODE_RANK (the Job's completion index, also in JOB_COMPLETION_INDEX),
  PET_MASTER_ADDR and PET_MASTER_PORT. On a cluster the master is `<name>-node-0-0.<name>`
  on port 29500; here it is 127.0.0.1 on a free port, so runs do not collide. Setting a PET_*
  variable in `trainer.env` is refused, as the admission webhook refuses it.
- No gang restart: a node that fails restarts in place (the pods' OnFailure), until the Job's
  failures reach its backoffLimit (Kubernetes' default, 6); then the JobSet, having no failure
  policy, fails at once and the other nodes are stopped.
- Status as the controller writes it: no condition while it runs; `Complete`
  (AllJobsCompleted, "jobset completed successfully") when every node exited 0; `Failed`
  (FailedJobs, "jobset failed due to one or more job failures (first failed job:
  <name>-node-0)", followed here by the failing node's exit code and last log lines) or
  (DeadlineExceeded, "TrainJob exceeded its active deadline", the JobSet deleted and
  `jobsStatus` left as last reported); and `jobsStatus` with one entry for the `node` Job,
  whose counts are of Jobs, not pods.

Any other runtime is refused with a clear error: its pod template, policies and plugins are
unknown here. Logs are `.llmflow/platform/<ns>/TrainJob/<name>/node-<index>.log` (`_jobs`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds._jobs import JobHandler, LocalJob, NodeProcess, pod_process, tail
from workflows.local.platform import LocalPlatform, Object, register
from workflows.local.s3 import free_port

#: The one runtime emulated: Kubeflow Trainer's stock ClusterTrainingRuntime.
RUNTIME = "torch-distributed"
RUNTIME_KIND = "ClusterTrainingRuntime"
RUNTIME_GROUP = "trainer.kubeflow.org"

#: Its replicated job and container.
NODE = "node"

#: Env the torch plugin sets; a TrainJob may not set them itself.
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR",
                "PET_MASTER_PORT")  # fmt: skip

#: Kubernetes' default Job backoffLimit: the Job fails when its pods' restarts reach it.
JOB_BACKOFF_LIMIT = 6

#: Seconds before a failed node restarts in place (the kubelet backs off from 10 s).
RESTART_DELAY_S = 1.0

COMPLETE_MESSAGE = "jobset completed successfully"
FAILED_MESSAGE = "jobset failed due to one or more job failures"
DEADLINE_MESSAGE = "TrainJob exceeded its active deadline"


@register("TrainJob")
class TrainJobHandler(JobHandler):
    """Runs TrainJobs on the `torch-distributed` runtime as local processes."""

    kind = "TrainJob"

    def new_job(self, obj: Object, namespace: str) -> LocalJob:
        """A TrainJob's nodes, checked as the admission webhook checks them."""
        return _TrainJob(self.platform, obj, namespace)


class _TrainJob(LocalJob):
    kind = "TrainJob"
    condition_times = ("lastTransitionTime",)  # metav1.Condition

    def __init__(self, platform: LocalPlatform, obj: Object, namespace: str) -> None:
        super().__init__(platform, obj, namespace)
        spec = obj.get("spec") or {}
        _check_runtime(self.name, spec.get("runtimeRef") or {})
        if spec.get("suspend") is True:
            raise RunError(
                f"TrainJob {self.name}: spec.suspend is true; a suspended TrainJob does not run "
                "locally (set suspend: false)"
            )
        self.deadline = spec.get("activeDeadlineSeconds")
        self.status = {}
        self.processes = self._nodes(spec)
        self.persist()

    # --- setup -------------------------------------------------------------------------

    def _nodes(self, spec: dict[str, Any]) -> list[NodeProcess]:
        trainer = spec.get("trainer")
        if not trainer or not trainer.get("command"):
            raise RunError(
                f"TrainJob {self.name}: spec.trainer.command is required locally; the "
                f"{RUNTIME} runtime's image has no training command of its own"
            )
        nodes = _int(self.name, "numNodes", trainer.get("numNodes", 1))
        if nodes < 1:
            raise RunError(
                f"TrainJob {self.name}: spec.trainer.numNodes = {nodes}; no node would train "
                "(set the run's train-replicas to 1 or more)"
            )
        reserved = [
            e.get("name") for e in trainer.get("env") or [] if e.get("name") in RESERVED_ENV
        ]
        if reserved:
            raise RunError(
                f"TrainJob {self.name}: spec.trainer.env: must not have reserved envs, invalid "
                f"envs configured: {reserved}; the torch plugin sets them"
            )
        pod = _patched_pod(spec)
        container = next(c for c in pod["containers"] if c["name"] == NODE)
        # The builder sets the trainer's command, args and env on the runtime's container.
        container.update({k: trainer[k] for k in ("command", "args", "env") if k in trainer})
        command, env = pod_process(
            self.platform, self.folder, pod, container, f"TrainJob {self.name}"
        )
        per_node = _procs_per_node(self.name, trainer)
        port = free_port()
        processes = []
        for index in range(nodes):
            plugin_env = {
                "JOB_COMPLETION_INDEX": str(index),
                "PET_NNODES": str(nodes),
                "PET_NPROC_PER_NODE": per_node,
                "PET_NODE_RANK": str(index),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            full_env = {**self.platform.env, **env, **plugin_env}
            name = f"{NODE}-{index}"
            processes.append(NodeProcess(name, command, full_env, self.folder / f"{name}.log"))
        return processes

    # --- status ------------------------------------------------------------------------

    def _jobs_status(self, *, active: int = 0, succeeded: int = 0, failed: int = 0) -> None:
        """The `node` Job's counts (a count of Jobs: this job has one)."""
        with self.lock:
            self.status["jobsStatus"] = [
                {
                    "name": NODE,
                    "ready": active,
                    "succeeded": succeeded,
                    "failed": failed,
                    "active": active,
                    "suspended": 0,
                }
            ]

    def _end(self, kind: str, reason: str, message: str, **counts: int) -> None:
        """A terminal condition; `counts` update jobsStatus as the JobSet reports it."""
        if counts:
            self._jobs_status(**counts)
        self.set_condition(kind, reason, message)
        self.persist()

    # --- running -----------------------------------------------------------------------

    def supervise(self) -> None:
        started = time.monotonic()
        for process in self.processes:
            self.launch(process, "attempt 1")
        self._jobs_status(active=1)
        self.persist()
        failures = 0
        while not self.stopping.is_set():
            time.sleep(0.1)
            if self.deadline and time.monotonic() - started > float(self.deadline):
                # The controller deletes the JobSet; jobsStatus stays as last reported.
                self.kill_all()
                self._end("Failed", "DeadlineExceeded", DEADLINE_MESSAGE)
                return
            for process in self.processes:
                code = process.exit_code()
                if code in (None, 0) or process.proc is None:
                    continue
                failures += 1
                process.failures += 1
                if failures >= JOB_BACKOFF_LIMIT:  # the Job fails when its restarts reach it
                    self.kill_all()
                    self._end(
                        "Failed",
                        "FailedJobs",
                        f"{FAILED_MESSAGE} (first failed job: {self.name}-{NODE}-0); "
                        f"{process.name} exited with code {code}, the job's pods' failure "
                        f"{failures} of {JOB_BACKOFF_LIMIT}; last log lines:\n"
                        f"{tail(process.log)}",
                        failed=1,
                    )
                    return
                process.proc = None  # restarting in place, as the kubelet does for OnFailure
                time.sleep(RESTART_DELAY_S)
                if self.stopping.is_set():
                    return
                self.launch(process, f"attempt {process.failures + 1}")
            if all(p.exit_code() == 0 for p in self.processes):
                self._end("Complete", "AllJobsCompleted", COMPLETE_MESSAGE, succeeded=1)
                return


def _check_runtime(job: str, ref: dict[str, Any]) -> None:
    """Only the stock torch-distributed ClusterTrainingRuntime is emulated."""
    name = ref.get("name")
    kind = ref.get("kind") or RUNTIME_KIND
    group = ref.get("apiGroup") or RUNTIME_GROUP
    if (name, kind, group) != (RUNTIME, RUNTIME_KIND, RUNTIME_GROUP):
        raise RunError(
            f"TrainJob {job}: runtimeRef {kind} {name!r} ({group}) cannot be run locally; the "
            f"local platform emulates only the {RUNTIME_KIND} {RUNTIME!r} that Kubeflow Trainer "
            f"ships (set finetune.runtime: {RUNTIME} to run locally, or use launcher: pytorchjob)"
        )


def _patched_pod(spec: dict[str, Any]) -> dict[str, Any]:
    """The runtime's `node` pod spec with the TrainJob's runtime patches applied."""
    pod: dict[str, Any] = {"containers": [{"name": NODE}], "volumes": []}
    for patch in spec.get("runtimePatches") or []:
        template = ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec")
        for job in (template or {}).get("replicatedJobs") or []:
            if job.get("name") != NODE:
                continue
            patched = ((job.get("template") or {}).get("spec") or {}).get("template") or {}
            pod_patch = patched.get("spec") or {}
            pod["volumes"] += pod_patch.get("volumes") or []
            for container in pod_patch.get("containers") or []:
                target = next(
                    (c for c in pod["containers"] if c["name"] == container["name"]), None
                )
                if target is None:
                    continue  # patches name containers of the runtime; others do not apply
                target.setdefault("volumeMounts", []).extend(container.get("volumeMounts") or [])
    return pod


def _procs_per_node(job: str, trainer: dict[str, Any]) -> str:
    """numProcPerNode, or `auto` resolved as the torch plugin does on CPU nodes."""
    if trainer.get("numProcPerNode") is not None:
        count = _int(job, "numProcPerNode", trainer["numProcPerNode"])
        if count < 1:
            raise RunError(f"TrainJob {job}: spec.trainer.numProcPerNode = {count}; use 1 or more")
        return str(count)
    resources = trainer.get("resourcesPerNode") or {}
    for kind in ("requests", "limits"):
        for name in resources.get(kind) or {}:
            if "gpu" in name.lower():
                return "auto"  # torchrun counts the GPUs
    cpu = (resources.get("requests") or {}).get("cpu") or (resources.get("limits") or {}).get("cpu")
    return str(max(1, _cpus(str(cpu)) if cpu else 1))


def _cpus(quantity: str) -> int:
    """A CPU quantity rounded up, as Quantity.Value() does ("2.5" -> 3, "500m" -> 1)."""
    if quantity.endswith("m"):
        return math.ceil(float(quantity[:-1]) / 1000)
    return math.ceil(float(quantity))


def _int(job: str, field: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RunError(
            f"TrainJob {job}: spec.trainer.{field} {value!r} is not an integer"
        ) from None
