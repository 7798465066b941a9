"""PyTorchJob on one machine: one process per replica, with the training operator's env.

Each replica (Master, Workers) runs its pod's container command as a local process, with
what the Kubeflow training operator sets: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and the
PET_* variables torchrun reads (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR, PET_MASTER_PORT), plus OMP_NUM_THREADS=1 unless the pod sets it. Volumes
are the same local folders the workflow's steps use, so `/models` is the weights cache.

Status is written as the operator writes it: conditions Created, Running, Restarting,
Succeeded or Failed, and replicaStatuses with active/succeeded/failed counts. When a
replica fails and restartPolicy allows it, the whole gang is restarted together (a
torchrun rendezvous needs every node), up to runPolicy.backoffLimit restarts; then the job
fails with the failing replica's exit code and last log lines in the Failed condition.
Logs are `.llmflow/platform/<ns>/PyTorchJob/<name>/<Type>-<index>.log`, and each running
replica's pid is in `<Type>-<index>.pid` beside it (`_jobs`).
"""

from __future__ import annotations

import time
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds._jobs import JobHandler, LocalJob, NodeProcess, pod_process, tail
from workflows.local.platform import LocalPlatform, Object, register
from workflows.local.s3 import free_port
from workflows.local.store import now


@register("PyTorchJob")
class PyTorchJobHandler(JobHandler):
    """Runs PyTorchJobs as local process gangs."""

    kind = "PyTorchJob"

    def new_job(self, obj: Object, namespace: str) -> LocalJob:
        """A PyTorchJob's gang, checked as the operator checks it."""
        return _PyTorchJob(self.platform, obj, namespace)


class _PyTorchJob(LocalJob):
    kind = "PyTorchJob"

    def __init__(self, platform: LocalPlatform, obj: Object, namespace: str) -> None:
        super().__init__(platform, obj, namespace)
        spec = obj.get("spec") or {}
        self.replica_specs = spec.get("pytorchReplicaSpecs") or {}
        if "Master" not in self.replica_specs:
            raise RunError(f"PyTorchJob {self.name}: pytorchReplicaSpecs needs a Master")
        policy = spec.get("runPolicy") or {}
        self.backoff_limit = int(policy.get("backoffLimit", 6))
        self.deadline = policy.get("activeDeadlineSeconds")
        self.restarts = 0
        self.status = {"conditions": [], "replicaStatuses": {}}
        self.types: dict[str, str] = {}  # process name -> replica type
        self.processes = self._replicas(spec)
        self._condition("Created", "PyTorchJobCreated", f"PyTorchJob {self.name} is created.")

    # --- setup -------------------------------------------------------------------------

    def _replicas(self, spec: dict[str, Any]) -> list[NodeProcess]:
        nproc = str(spec.get("nprocPerNode") or "1")
        counts = {t: _count(self.name, t, s) for t, s in self.replica_specs.items()}
        nodes = sum(counts.values())
        per_node = int(nproc) if nproc.isdigit() else 1
        port = free_port()
        replicas, rank = [], 0
        for rtype in ["Master", *sorted(t for t in self.replica_specs if t != "Master")]:
            pod = self.replica_specs[rtype].get("template", {}).get("spec", {})
            containers = pod.get("containers") or []
            container = next((c for c in containers if c.get("name") == "pytorch"), None)
            if container is None:
                raise RunError(f"PyTorchJob {self.name}: {rtype} has no container named 'pytorch'")
            where = f"PyTorchJob {self.name} {rtype}"
            command, env = pod_process(self.platform, self.folder, pod, container, where)
            for index in range(counts[rtype]):
                operator_env = {
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(nodes * per_node),
                    "RANK": str(rank),
                    "PET_MASTER_ADDR": "127.0.0.1",
                    "PET_MASTER_PORT": str(port),
                    "PET_NNODES": str(nodes),
                    "PET_NPROC_PER_NODE": nproc,
                    "PET_NODE_RANK": str(rank),
                    "OMP_NUM_THREADS": "1",
                }
                full_env = {**self.platform.env, **operator_env, **env}
                name = f"{rtype}-{index}"
                self.types[name] = rtype
                log = self.folder / f"{name}.log"
                replicas.append(NodeProcess(name, command, full_env, log))
                rank += 1
        return replicas

    # --- status ------------------------------------------------------------------------

    def _condition(self, kind: str, reason: str, message: str) -> None:
        with self.lock:
            for condition in self.status["conditions"]:
                if condition["type"] in {"Running", "Restarting"} and kind != condition["type"]:
                    condition["status"] = "False"
        self.set_condition(kind, reason, message)
        self.persist()

    def _count(self, rtype: str, field: str, value: int) -> None:
        with self.lock:
            self.status["replicaStatuses"].setdefault(rtype, {})[field] = value

    # --- running -----------------------------------------------------------------------

    def _launch(self) -> None:
        for replica in self.processes:
            self.launch(replica, f"restart {self.restarts}")
        for rtype in self.replica_specs:
            active = sum(1 for name in self.types.values() if name == rtype)
            self._count(rtype, "active", active)

    def supervise(self) -> None:
        with self.lock:
            self.status["startTime"] = now()
        started = time.monotonic()
        self._launch()
        self._condition("Running", "PyTorchJobRunning", f"PyTorchJob {self.name} is running.")
        while not self.stopping.is_set():
            time.sleep(0.1)
            if self.deadline and time.monotonic() - started > float(self.deadline):
                self.kill_all()
                self._fail("DeadlineExceeded", "the job exceeded runPolicy.activeDeadlineSeconds")
                return
            failed = next((r for r in self.processes if r.exit_code() not in (None, 0)), None)
            master = self.processes[0]
            if failed is not None:
                code = failed.exit_code()
                self.kill_all()
                if self._restartable(failed) and self.restarts < self.backoff_limit:
                    self.restarts += 1
                    self._condition(
                        "Restarting",
                        "PyTorchJobRestarting",
                        f"{failed.name} exited with code {code}; "
                        f"restart {self.restarts} of {self.backoff_limit}",
                    )
                    time.sleep(1.0)
                    if self.stopping.is_set():
                        return
                    self._launch()
                    self._condition(
                        "Running", "PyTorchJobRunning", f"PyTorchJob {self.name} is running."
                    )
                    continue
                self._fail(
                    "BackoffLimitExceeded",
                    f"{failed.name} exited with code {code} after {self.restarts} restarts; "
                    f"last log lines:\n{tail(failed.log)}",
                    self.types[failed.name],
                )
                return
            if master.exit_code() == 0:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(r.running() for r in self.processes):
                    time.sleep(0.1)
                self.kill_all()
                for rtype in self.replica_specs:
                    done = sum(
                        1
                        for r in self.processes
                        if self.types[r.name] == rtype and r.exit_code() == 0
                    )
                    self._count(rtype, "active", 0)
                    self._count(rtype, "succeeded", done)
                with self.lock:
                    self.status["completionTime"] = now()
                self._condition(
                    "Succeeded",
                    "PyTorchJobSucceeded",
                    f"PyTorchJob {self.name} is successfully completed.",
                )
                return

    def _restartable(self, replica: NodeProcess) -> bool:
        policy = self.replica_specs[self.types[replica.name]].get("restartPolicy", "Never")
        if policy in {"OnFailure", "Always"}:
            return True
        if policy == "ExitCode":  # the operator retries signals (128+), not errors (1-127)
            code = replica.exit_code()
            return code is not None and (code < 0 or code >= 128)
        return False

    def _fail(self, reason: str, message: str, rtype: str = "Master") -> None:
        for t in self.replica_specs:
            self._count(t, "active", 0)
        self._count("Master", "failed", 1)
        if rtype != "Master":
            self._count(rtype, "failed", 1)
        with self.lock:
            self.status["completionTime"] = now()
        self._condition("Failed", reason, message)


def _count(job: str, rtype: str, spec: dict[str, Any]) -> int:
    """A replica type's count, refused as the operator's webhook refuses it.

    The Master must be exactly 1 and another type at least 1 (`pytorchjob_webhook.go`).
    """
    value = spec.get("replicas", 1)
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise RunError(f"PyTorchJob {job}: {rtype} replicas {value!r} is not an integer") from None
    path = f"spec.pytorchReplicaSpecs[{rtype}].replicas"
    if rtype == "Master" and count != 1:
        raise RunError(f"PyTorchJob {job}: {path}: Forbidden: must be 1")
    if count < 1:
        raise RunError(
            f"PyTorchJob {job}: {path}: Forbidden: must be at least 1 (leave the {rtype} "
            "group out for a job of one node)"
        )
    return count
