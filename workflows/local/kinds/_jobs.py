"""What the local training-job kinds share: node processes, the job object on disk, its handler.

A training job (PyTorchJob, TrainJob) runs as a gang of local processes, one per pod, supervised
by a thread of the `llmflow run` that created it, so none outlives that run. Its object, with
the status its controller would write, is kept at
`.llmflow/platform/<ns>/<Kind>/<name>/object.json` while it exists; deleting the job ends its
processes and removes that file, and leaves the logs (`<pod>.log`) and pids (`<pod>.pid`)
beside it for a post-mortem.
"""

from __future__ import annotations

import copy
import subprocess
import threading
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds._state import read_json, write_json
from workflows.local.leaves import local_command, resolve_env, terminate
from workflows.local.paths import local_volumes, mapper_for
from workflows.local.platform import KindHandler, LocalPlatform, Object
from workflows.local.store import now

#: Lines of a failed process's log quoted in the job's Failed condition.
TAIL_LINES = 20

#: The file that holds a job object while it exists.
OBJECT_FILE = "object.json"


@dataclass
class NodeProcess:
    """One pod of a job as a local process: its command, env and log."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    failures: int = 0

    def running(self) -> bool:
        """Started and not yet exited."""
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The exit code, or None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()


class LocalJob:
    """A job object with its status and its processes; subclasses supervise them."""

    kind = ""

    def __init__(self, platform: LocalPlatform, obj: Object, namespace: str) -> None:
        self.platform = platform
        self.obj = obj
        self.obj["metadata"]["namespace"] = namespace
        self.name = obj["metadata"]["name"]
        self.folder = platform.root / namespace / self.kind / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # the status
        # Starting a process, stopping, and writing the object: so that no process starts
        # after a stop, and no write lands after a delete.
        self.guard = threading.Lock()
        self.stopping = threading.Event()
        self.status: dict[str, Any] = {}
        self.processes: list[NodeProcess] = []
        self.thread: threading.Thread | None = None

    # --- status -------------------------------------------------------------------------

    def snapshot(self) -> Object:
        """The object with its current status."""
        with self.lock:
            obj = copy.deepcopy(self.obj)
            obj["status"] = copy.deepcopy(self.status)
        return obj

    def persist(self, force: bool = False) -> None:
        """Write the object with its status (atomically), unless the job is stopping.

        `force` writes a stopping job's last status (the run ended under it), never a deleted
        one's: `JobHandler.delete` removes the file after the supervisor has returned.
        """
        with self.guard:
            if self.stopping.is_set() and not force:
                return
            write_json(self.folder / OBJECT_FILE, self.snapshot())

    #: Fields of a condition as the kind's controller writes them (PyTorchJob's JobCondition
    #: has lastUpdateTime; a metav1.Condition, as TrainJob's, has not).
    condition_times: tuple[str, ...] = ("lastUpdateTime", "lastTransitionTime")

    def set_condition(self, kind: str, reason: str, message: str, status: str = "True") -> None:
        """Add or replace a condition (an earlier one of the same type is replaced)."""
        stamp = now()
        with self.lock:
            conditions = self.status.setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c["type"] != kind]
            condition = {"type": kind, "status": status, "reason": reason, "message": message}
            condition.update({field: stamp for field in self.condition_times})
            conditions.append(condition)

    def finished(self) -> bool:
        """Whether a terminal condition (Succeeded, Complete, Failed) is True."""
        with self.lock:
            conditions = self.status.get("conditions") or []
            return any(
                c["type"] in {"Succeeded", "Complete", "Failed"} and c["status"] == "True"
                for c in conditions
            )

    # --- processes ----------------------------------------------------------------------

    def launch(self, process: NodeProcess, note: str) -> bool:
        """Start one process in its own session, its output appended to its log.

        Returns False, starting nothing, once the job is stopping.
        """
        with self.guard:
            if self.stopping.is_set():
                return False
            with open(process.log, "ab") as log:
                log.write(f"--- {now()} start {process.name} ({note})\n".encode())
                process.proc = subprocess.Popen(
                    process.command,
                    env=process.env,
                    cwd=self.platform.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            (self.folder / f"{process.name}.pid").write_text(str(process.proc.pid))
            return True

    def kill_all(self) -> None:
        """End every running process group (SIGTERM, then SIGKILL)."""
        for process in self.processes:
            if process.proc is not None and process.proc.poll() is None:
                terminate(process.proc, grace=2.0)

    def start(self) -> None:
        """Supervise the processes on a thread of this run."""
        self.persist()
        self.thread = threading.Thread(
            target=self._supervised, name=f"{self.kind.lower()}-{self.name}", daemon=True
        )
        self.thread.start()

    def _supervised(self) -> None:
        try:
            self.supervise()
        finally:
            if self.stopping.is_set():
                self.kill_all()

    def stop(self) -> None:
        """End the processes and wait for the supervisor to return."""
        with self.guard:  # after this, no process starts (`launch`) and nothing is written
            self.stopping.set()
        self.kill_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)

    @abstractmethod
    def supervise(self) -> None:
        """Run the processes to an end, writing status as the kind's controller does."""


class JobHandler(KindHandler):
    """A kind whose objects are LocalJobs: created once, deleted with their processes."""

    kind = ""

    def __init__(self, platform: LocalPlatform) -> None:
        super().__init__(platform)
        self._jobs: dict[tuple[str, str], LocalJob] = {}

    @abstractmethod
    def new_job(self, obj: Object, namespace: str) -> LocalJob:
        """The job for an object (raises RunError for what the controller would refuse)."""

    def apply(self, obj: Object, action: str) -> Object:
        """Start the job (create or apply; an existing job is left as it is)."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or self.platform.namespace, meta.get("name", ""))
        if not key[1]:
            raise RunError(f"{self.kind} without metadata.name")
        if key in self._jobs:
            if action == "create":
                raise RunError(f'{self.kind} "{key[1]}" already exists in namespace {key[0]}')
            return self._jobs[key].snapshot()
        job = self.new_job(copy.deepcopy(obj), key[0])
        self._jobs[key] = job
        job.start()
        return job.snapshot()

    def get(self, namespace: str, name: str) -> Object | None:
        """The job with its current status; a job of an earlier run as it was left."""
        job = self._jobs.get((namespace, name))
        if job is not None:
            return job.snapshot()
        stored = read_json(self.platform.root / namespace / self.kind / name / OBJECT_FILE)
        return dict(stored) if stored is not None else None

    def delete(self, namespace: str, name: str) -> None:
        """Stop the job's processes and remove its object (logs stay)."""
        job = self._jobs.pop((namespace, name), None)
        if job is not None:
            job.stop()
        (self.platform.root / namespace / self.kind / name / OBJECT_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every job's processes: none outlives the run that supervises it.

        A job still running is left Failed (reason `LocalRunEnded`), so its object does not
        claim to run on.
        """
        for job in self._jobs.values():
            job.stop()
            if not job.finished():
                job.set_condition(
                    "Failed",
                    "LocalRunEnded",
                    f"the run that supervised {self.kind} "
                    f"{job.name} ended; a local job lives no longer than its run",
                )
                job.persist(force=True)


def pod_process(
    platform: LocalPlatform,
    folder: Path,
    pod: dict[str, Any],
    container: dict[str, Any],
    where: str,
) -> tuple[list[str], dict[str, str]]:
    """A pod container's command and env on this machine.

    Volumes are the platform's folders (paths in the command and env rewritten to them);
    Secret and ConfigMap references are resolved.

    Raises:
        RunError: the container has no command, or names a volume the pod lacks.
    """
    volumes = local_volumes(platform.home, pod.get("volumes") or [], folder)
    mapper = mapper_for(container, volumes, folder / "fs")
    env = resolve_env(platform, container.get("env") or [], mapper, where)
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    command = local_command([mapper.rewrite(str(word)) for word in words])
    if not command:
        raise RunError(f"{where}: the container has no command")
    return command, env


def tail(path: Path) -> str:
    """The last lines of a log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-TAIL_LINES:])
