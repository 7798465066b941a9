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
replica's pid is in `<Type>-<index>.pid` beside it.
"""

from __future__ import annotations

import copy
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.leaves import local_command, resolve_env, terminate
from workflows.local.paths import local_volumes, mapper_for
from workflows.local.platform import KindHandler, LocalPlatform, Object, register
from workflows.local.s3 import free_port
from workflows.local.store import now

#: Lines of a failed replica's log quoted in the job's Failed condition.
TAIL_LINES = 20


@dataclass
class _Replica:
    type: str
    index: int
    rank: int
    command: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.type}-{self.index}"


@register("PyTorchJob")
class PyTorchJobHandler(KindHandler):
    """Runs PyTorchJobs as local process gangs."""

    def __init__(self, platform: LocalPlatform) -> None:
        super().__init__(platform)
        self._jobs: dict[tuple[str, str], _LocalJob] = {}

    def apply(self, obj: Object, action: str) -> Object:
        """Start the job (create or apply; an existing job is left as it is)."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or self.platform.namespace, meta.get("name", ""))
        if not key[1]:
            raise RunError("PyTorchJob without metadata.name")
        if key in self._jobs:
            if action == "create":
                raise RunError(f'PyTorchJob "{key[1]}" already exists in namespace {key[0]}')
            return self._jobs[key].snapshot()
        job = _LocalJob(self.platform, copy.deepcopy(obj), key[0])
        self._jobs[key] = job
        job.start()
        return job.snapshot()

    def get(self, namespace: str, name: str) -> Object | None:
        """The job with its current status."""
        job = self._jobs.get((namespace, name))
        return job.snapshot() if job else None

    def delete(self, namespace: str, name: str) -> None:
        """Stop the job's processes and forget it."""
        job = self._jobs.pop((namespace, name), None)
        if job:
            job.stop()

    def close(self) -> None:
        """Stop every job (the run is over)."""
        for job in self._jobs.values():
            job.stop()


class _LocalJob:
    def __init__(self, platform: LocalPlatform, obj: Object, namespace: str) -> None:
        self.platform = platform
        self.obj = obj
        self.obj["metadata"]["namespace"] = namespace
        self.name = obj["metadata"]["name"]
        self.folder = platform.root / namespace / "PyTorchJob" / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        spec = obj.get("spec") or {}
        self.replica_specs = spec.get("pytorchReplicaSpecs") or {}
        if "Master" not in self.replica_specs:
            raise RunError(f"PyTorchJob {self.name}: pytorchReplicaSpecs needs a Master")
        policy = spec.get("runPolicy") or {}
        self.backoff_limit = int(policy.get("backoffLimit", 6))
        self.deadline = policy.get("activeDeadlineSeconds")
        self.restarts = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.status: dict[str, Any] = {"conditions": [], "replicaStatuses": {}}
        self.replicas = self._replicas(spec)
        self._condition("Created", "PyTorchJobCreated", f"PyTorchJob {self.name} is created.")

    # --- setup -------------------------------------------------------------------------

    def _replicas(self, spec: dict[str, Any]) -> list[_Replica]:
        nproc = str(spec.get("nprocPerNode") or "1")
        counts = {t: int(s.get("replicas", 1)) for t, s in self.replica_specs.items()}
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
            volumes = local_volumes(self.platform.home, pod.get("volumes") or [], self.folder)
            mapper = mapper_for(container, volumes, self.folder / "fs")
            where = f"PyTorchJob {self.name} {rtype}"
            env = resolve_env(self.platform, container.get("env") or [], mapper, where)
            command = local_command(
                [
                    mapper.rewrite(c)
                    for c in [*(container.get("command") or []), *(container.get("args") or [])]
                ]
            )
            if not command:
                raise RunError(f"{where}: the container has no command")
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
                log = self.folder / f"{rtype}-{index}.log"
                replicas.append(_Replica(rtype, index, rank, command, full_env, log))
                rank += 1
        return replicas

    # --- status ------------------------------------------------------------------------

    def _condition(self, kind: str, reason: str, message: str) -> None:
        with self.lock:
            conditions = self.status["conditions"]
            for condition in conditions:
                if condition["type"] in {"Running", "Restarting"} and kind != condition["type"]:
                    condition["status"] = "False"
            conditions[:] = [c for c in conditions if c["type"] != kind]
            stamp = now()
            conditions.append(
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp,
                }
            )

    def _count(self, rtype: str, field: str, value: int) -> None:
        with self.lock:
            self.status["replicaStatuses"].setdefault(rtype, {})[field] = value

    def snapshot(self) -> Object:
        with self.lock:
            obj = copy.deepcopy(self.obj)
            obj["status"] = copy.deepcopy(self.status)
        return obj

    # --- running -----------------------------------------------------------------------

    def start(self) -> None:
        self.status["startTime"] = now()
        threading.Thread(
            target=self._supervise, name=f"pytorchjob-{self.name}", daemon=True
        ).start()

    def stop(self) -> None:
        self.stopping.set()
        self._kill_all()

    def _launch(self) -> None:
        for replica in self.replicas:
            with open(replica.log, "ab") as log:
                log.write(f"--- {now()} start {replica.name} (restart {self.restarts})\n".encode())
                replica.proc = subprocess.Popen(
                    replica.command,
                    env=replica.env,
                    cwd=self.platform.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            (self.folder / f"{replica.name}.pid").write_text(str(replica.proc.pid))
        for rtype in self.replica_specs:
            active = sum(1 for r in self.replicas if r.type == rtype)
            self._count(rtype, "active", active)

    def _kill_all(self) -> None:
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                terminate(replica.proc, grace=2.0)

    def _supervise(self) -> None:
        started = time.monotonic()
        self._launch()
        self._condition("Running", "PyTorchJobRunning", f"PyTorchJob {self.name} is running.")
        while not self.stopping.is_set():
            time.sleep(0.1)
            if self.deadline and time.monotonic() - started > float(self.deadline):
                self._kill_all()
                self._fail("DeadlineExceeded", "the job exceeded runPolicy.activeDeadlineSeconds")
                return
            failed = next(
                (r for r in self.replicas if r.proc is not None and r.proc.poll() not in (None, 0)),
                None,
            )
            master = self.replicas[0]
            if failed is not None and failed.proc is not None:
                code = failed.proc.returncode
                self._kill_all()
                if self._restartable(failed) and self.restarts < self.backoff_limit:
                    self.restarts += 1
                    self._condition(
                        "Restarting",
                        "PyTorchJobRestarting",
                        f"{failed.name} exited with code {code}; "
                        f"restart {self.restarts} of {self.backoff_limit}",
                    )
                    time.sleep(1.0)
                    self._launch()
                    self._condition(
                        "Running", "PyTorchJobRunning", f"PyTorchJob {self.name} is running."
                    )
                    continue
                self._fail(
                    "BackoffLimitExceeded",
                    f"{failed.name} exited with code {code} after {self.restarts} restarts; "
                    f"last log lines:\n{_tail(failed.log)}",
                    failed.type,
                )
                return
            if master.proc is not None and master.proc.poll() == 0:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(
                    r.proc is not None and r.proc.poll() is None for r in self.replicas
                ):
                    time.sleep(0.1)
                self._kill_all()
                for rtype in self.replica_specs:
                    done = sum(
                        1
                        for r in self.replicas
                        if r.type == rtype and r.proc and r.proc.returncode == 0
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

    def _restartable(self, replica: _Replica) -> bool:
        policy = self.replica_specs[replica.type].get("restartPolicy", "Never")
        if policy in {"OnFailure", "Always"}:
            return True
        if policy == "ExitCode":  # the operator retries signals (128+), not errors (1-127)
            code = replica.proc.returncode if replica.proc is not None else 0
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


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-TAIL_LINES:])
