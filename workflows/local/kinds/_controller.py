"""The controller of one local Deployment: kubelet, ReplicaSets and status, from files on disk.

`DeploymentHandler` (`deployment.py`) runs a `Controller` pass, with the serving lock held, on
every `get` and `apply` and on each tick of its background thread. A pass reads the
Deployment's folder, does what the Deployment and ReplicaSet controllers and the kubelet would
do, and writes the result back. The state is the files (only probe timings stay in memory), so
any later `llmflow` process (a run, `llmflow local status`) carries on with the pods:

- each pod is a detached process group (`_pods`) running the container's command with a
  local runtime (`_runtime`: `vllm/vllm-openai` -> `.venv/vllm`), on a free port, one core;
  volumes are the same local folders the steps use (`/models` is the weights cache);
- readiness comes from the readinessProbe (httpGet or tcpSocket on the pod's port); a dead
  process is not ready and is restarted (restartCount + 1), with CrashLoopBackOff's doubling
  delay when it exits before it was ever ready;
- a change of the pod template is a rolling update (maxSurge / maxUnavailable, default 25%
  rounded to at least one surge pod): start a new pod, wait until it is ready, then take an
  old pod out of the Services (gateway, Prometheus) and stop it after a short drain; scaling
  starts or drains pods the same way;
- status as the Deployment controller writes it: observedGeneration, replicas,
  updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas and the conditions
  Available and Progressing (NewReplicaSetAvailable, ReplicaSetUpdated, or
  ProgressDeadlineExceeded when progressDeadlineSeconds pass without progress, or sooner when
  a new pod crashed `CRASH_LOOP_LIMIT` times before it was ready: the message then says
  CrashLoopBackOff and quotes the log).

Not done locally: liveness probes (a hung server is taken out of the Services by its
readiness probe, not restarted), minReadySeconds beyond counting availability, multiple
containers per pod.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import signal
import socket
import string
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.kinds import _network, _pods, _runtime
from workflows.local.kinds._endpoints import all_pods
from workflows.local.kinds._state import read_json, write_json
from workflows.local.leaves import resolve_env
from workflows.local.paths import local_volumes, mapper_for
from workflows.local.s3 import free_port
from workflows.local.store import now

if TYPE_CHECKING:
    from workflows.local.kinds.deployment import DeploymentHandler
    from workflows.local.platform import Object

#: Seconds a pod taken out of its Services keeps running (endpoint propagation, in-flight work).
DRAIN_S = 1.5
#: Seconds a stopping pod gets between SIGTERM and SIGKILL.
GRACE_S = 15.0
#: Exits before ready after which a rollout is reported stuck (CrashLoopBackOff).
CRASH_LOOP_LIMIT = 3
#: Restart delay after the first crash, doubled per crash up to `MAX_BACKOFF_S`.
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
#: Least seconds a startupProbe allows locally: a CPU starts slower than the GPUs it was sized for.
MIN_STARTUP_S = 300.0
#: Seconds between readiness probes of a pod that is not ready yet.
UNREADY_PROBE_S = 0.5
#: Log lines quoted in a crash-loop condition.
TAIL_LINES = 15


def only_container(template: dict[str, Any], where: str) -> dict[str, Any]:
    """The pod template's one container (locally a pod runs exactly one)."""
    containers = (template.get("spec") or {}).get("containers") or []
    if len(containers) != 1:
        raise RunError(
            f"{where}: locally a pod runs exactly one container, this one has {len(containers)}"
        )
    return dict(containers[0])


class Controller:
    """Reconciles one Deployment from its files (called with the serving lock held)."""

    def __init__(self, handler: DeploymentHandler, namespace: str, name: str) -> None:
        self.handler = handler
        self.platform = handler.platform
        self.namespace, self.name = namespace, name
        self.folder = handler.folder(namespace, name)
        self.obj: Object = read_json(self.folder / "object.json")
        self.pods: list[dict[str, Any]] = read_json(self.folder / "pods.json", []) or []
        spec = self.obj.get("spec") or {}
        self.spec = spec
        self.template = spec.get("template") or {}
        self.hash = hashlib.sha256(json.dumps(self.template, sort_keys=True).encode()).hexdigest()[
            :10
        ]
        self.replicas = int(spec.get("replicas", 1))
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        self.surge = _count(rolling.get("maxSurge", "25%"), self.replicas, True)
        self.unavailable = _count(rolling.get("maxUnavailable", "25%"), self.replicas, False)
        if self.surge == 0 and self.unavailable == 0:
            self.surge = 1
        self.recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        self.routing_changed = False
        self.changed = False

    @property
    def where(self) -> str:
        return f"Deployment {self.namespace}/{self.name}"

    # --- the loop ------------------------------------------------------------------------

    def reconcile(self) -> Object:
        t = time.time()
        for pod in list(self.pods):
            self._kubelet(pod, t)
        self._scale(t)
        if self.changed:
            write_json(self.folder / "pods.json", self.pods)
            hashes = {self.hash, *(p["hash"] for p in self.pods)}
            for path in self.folder.glob("template-*.json"):
                if path.stem.removeprefix("template-") not in hashes:
                    path.unlink(missing_ok=True)
        if self.routing_changed:
            _network.sync(self.platform.root)
        status = self._status(t)
        if status != self.obj.get("status"):
            self.obj["status"] = status
            write_json(self.folder / "object.json", self.obj)
        return copy.deepcopy(self.obj)

    def _kubelet(self, pod: dict[str, Any], t: float) -> None:
        """What the kubelet does for one pod: run it, probe it, restart it, stop it."""
        if pod.get("terminating"):
            self._terminate(pod, t)
            return
        pid = pod.get("pid")
        if pid and not _pods.alive(pid, pod.get("ticks")):
            code = _pods.exit_code(pid)
            _kill_leftovers(pid)  # what the dead leader left behind
            if pod.get("ready"):
                self.routing_changed = True
            if not pod.get("readySince"):
                pod["failures"] = int(pod.get("failures", 0)) + 1
            delay = 0.0
            if pod.get("failures"):
                delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (int(pod["failures"]) - 1))
            pod.update(
                pid=None,
                ready=False,
                readySince=None,
                nextStart=t + delay,
                lastExit={"exitCode": code, "finishedAt": now()},
            )
            self.changed = True
        if not pod.get("pid"):
            if t >= float(pod.get("nextStart") or 0):
                self._launch(pod)
            return
        self._probe(pod, t)

    def _probe(self, pod: dict[str, Any], t: float) -> None:
        container = only_container(self._template_of(pod), self.where)
        probe = container.get("readinessProbe")
        memo = self.handler.probes.setdefault(pod["name"], {"at": 0.0, "fails": 0.0})
        ready = bool(pod.get("ready"))
        period = float((probe or {}).get("periodSeconds", 10)) if ready else UNREADY_PROBE_S
        if t - memo["at"] < period:
            return
        memo["at"] = t
        started = float(pod.get("started") or t)
        if probe and t - started < float(probe.get("initialDelaySeconds", 0)):
            return
        ok = _check(probe, pod) if probe else True
        if ok and not ready:
            memo["fails"] = 0
            pod.update(ready=True, readySince=t, failures=0)
            self.changed = self.routing_changed = True
        elif not ok and ready:
            memo["fails"] += 1
            if memo["fails"] >= float(probe.get("failureThreshold", 3) if probe else 3):
                pod.update(ready=False)
                self.changed = self.routing_changed = True
        elif ok:
            memo["fails"] = 0
        elif not ready:
            startup = container.get("startupProbe")
            if startup:
                budget = float(startup.get("initialDelaySeconds", 0)) + float(
                    startup.get("periodSeconds", 10)
                ) * float(startup.get("failureThreshold", 3))
                if t - started > max(budget, MIN_STARTUP_S):
                    _pods.signal_group(pod["pid"], signal.SIGKILL)  # restarted next time

    def _terminate(self, pod: dict[str, Any], t: float) -> None:
        pid = pod.get("pid")
        if not pid or not _pods.group_alive(pid) or not _pods.alive(pid, pod.get("ticks")):
            if pid:
                _kill_leftovers(pid)
            self.pods.remove(pod)
            self.handler.probes.pop(pod["name"], None)
            (self.folder / f"{pod['name']}.log").unlink(missing_ok=True)
            self.changed = True
            return
        if t < float(pod.get("drainUntil") or 0):
            return
        if not pod.get("termSent"):
            _pods.signal_group(pid, signal.SIGTERM)
            pod["termSent"] = t
            self.changed = True
        elif t - float(pod["termSent"]) > GRACE_S:
            _pods.signal_group(pid, signal.SIGKILL)

    # --- the ReplicaSets -----------------------------------------------------------------

    def _scale(self, t: float) -> None:
        live = [p for p in self.pods if not p.get("terminating")]
        new = [p for p in live if p["hash"] == self.hash]
        old = [p for p in live if p["hash"] != self.hash]
        if self.recreate and (old or len(live) < len(self.pods)):
            for pod in old:
                self._drain(pod, t)
            return
        while len(new) < self.replicas and len(new) + len(old) < self.replicas + self.surge:
            new.append(self._new_pod())
        # too many new pods (scaled down): drain the not-ready and the youngest first
        while len(new) > self.replicas:
            victim = sorted(new, key=lambda p: (bool(p.get("ready")), -p["created"]))[0]
            new.remove(victim)
            self._drain(victim, t)
        ready = sum(1 for p in live if p.get("ready"))
        floor = self.replicas - self.unavailable
        for pod in sorted(old, key=lambda p: bool(p.get("ready"))):
            if not pod.get("ready"):
                self._drain(pod, t)
            elif ready - 1 >= floor:
                ready -= 1
                self._drain(pod, t)

    def _drain(self, pod: dict[str, Any], t: float) -> None:
        """Take a pod out of its Services now; it is stopped after `DRAIN_S`."""
        pod.update(terminating=True, drainUntil=t + (DRAIN_S if pod.get("ready") else 0))
        self.changed = self.routing_changed = True

    def _new_pod(self) -> dict[str, Any]:
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        labels = dict((self.template.get("metadata") or {}).get("labels") or {})
        labels["pod-template-hash"] = self.hash
        pod: dict[str, Any] = {
            "name": f"{self.name}-{self.hash}-{suffix}",
            "hash": self.hash,
            "labels": labels,
            "created": time.time(),
            "restarts": -1,
            "failures": 0,
            "pid": None,
        }
        self.pods.append(pod)
        _template_store(self.folder, self.hash, self.template)
        self._launch(pod)
        return pod

    def _template_of(self, pod: dict[str, Any]) -> dict[str, Any]:
        if pod["hash"] == self.hash:
            return dict(self.template)
        return dict(read_json(self.folder / f"template-{pod['hash']}.json", self.template))

    def _launch(self, pod: dict[str, Any]) -> None:
        """Start (or restart) a pod's process with its template's command."""
        template = self._template_of(pod)
        spec = template.get("spec") or {}
        container = only_container(template, self.where)
        port = pod.get("port")
        if not port or not _pods.port_free(int(port)):
            port = free_port()
        volumes = local_volumes(self.platform.home, spec.get("volumes") or [], self.folder)
        mapper = mapper_for(container, volumes, self.folder / "fs")
        container_env = resolve_env(self.platform, container.get("env") or [], mapper, self.where)
        used = [
            int(p["core"])
            for ns, name, p in all_pods(self.platform.root)
            if p.get("pid") and (ns, name) != (self.namespace, self.name)
        ]
        used += [int(p["core"]) for p in self.pods if p.get("pid") and p is not pod]
        core = _runtime.least_used_core(os.sched_getaffinity(0), used)
        env = _runtime.pod_env(self.platform.env, container_env, core)
        command = _runtime.pod_command(
            container, mapper, port, self.platform.env, self.platform.workdir, self.where
        )
        log = self.folder / f"{pod['name']}.log"
        restarts = int(pod.get("restarts", -1)) + 1
        with open(log, "ab") as out:
            out.write(f"--- {now()} start {pod['name']} (restart {restarts})\n".encode())
        try:
            pid, ticks = _pods.launch(command, env, self.platform.workdir, log)
        except OSError as exc:
            raise RunError(f"{self.where}: cannot start {command[0]}: {exc}") from exc
        pod.update(
            pid=pid,
            ticks=ticks,
            port=port,
            ports=_runtime.local_ports(container, port),
            core=core,
            container=container.get("name", ""),
            ready=False,
            readySince=None,
            restarts=restarts,
            started=time.time(),
            startedAt=now(),
            nextStart=0,
        )
        self.handler.probes.pop(pod["name"], None)
        self.changed = True

    # --- status --------------------------------------------------------------------------

    def _status(self, t: float) -> dict[str, Any]:
        previous = self.obj.get("status") or {}
        live = [p for p in self.pods if not p.get("terminating")]
        min_ready = float(self.spec.get("minReadySeconds", 0))
        counts = {
            "replicas": len(live),
            "updatedReplicas": sum(1 for p in live if p["hash"] == self.hash),
            "readyReplicas": sum(1 for p in live if p.get("ready")),
            "availableReplicas": sum(
                1
                for p in live
                if p.get("ready") and t - float(p.get("readySince") or t) >= min_ready
            ),
        }
        counts["unavailableReplicas"] = max(counts["replicas"] - counts["availableReplicas"], 0)
        generation = self.obj["metadata"].get("generation", 1)
        conditions = {c["type"]: c for c in previous.get("conditions") or []}
        if counts["availableReplicas"] >= self.replicas - self.unavailable:
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        _set_condition(conditions, "Available", *available)
        rs = f'ReplicaSet "{self.name}-{self.hash}"'
        complete = (
            counts["updatedReplicas"] == self.replicas
            and counts["replicas"] == self.replicas
            and counts["availableReplicas"] == self.replicas
        )
        progressing = conditions.get("Progressing")
        new_rollout = previous.get("observedGeneration") != generation
        progressed = (
            new_rollout
            or any(
                counts[k] > int(previous.get(k, 0))
                for k in ("updatedReplicas", "readyReplicas", "availableReplicas")
            )
            or (counts["replicas"] - counts["updatedReplicas"])
            < (int(previous.get("replicas", 0)) - int(previous.get("updatedReplicas", 0)))
        )
        deadline = float(self.spec.get("progressDeadlineSeconds", 600))
        if complete:
            _set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f"{rs} has successfully progressed.",
                touch=progressed,
            )
        elif progressed or progressing is None:
            _set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f"{rs} is progressing.",
                touch=True,
            )
        elif progressing.get("reason") != "NewReplicaSetAvailable":
            crashed = self._crash_loop()
            stalled = t - _epoch(progressing.get("lastUpdateTime")) > deadline
            if crashed or stalled:
                message = f"{rs} has timed out progressing."
                if crashed:
                    message += " " + crashed
                _set_condition(
                    conditions, "Progressing", "False", "ProgressDeadlineExceeded", message
                )
        status: dict[str, Any] = {"observedGeneration": generation, **counts}
        status["conditions"] = [conditions[k] for k in ("Available", "Progressing")]
        return {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}

    def _crash_loop(self) -> str:
        for pod in self.pods:
            if pod["hash"] == self.hash and int(pod.get("failures", 0)) >= CRASH_LOOP_LIMIT:
                code = (pod.get("lastExit") or {}).get("exitCode")
                how = "exited" if code is None else f"exited with code {code}"
                log = _pods.tail(self.folder / f"{pod['name']}.log", TAIL_LINES)
                return (
                    f"Pod {pod['name']} is in CrashLoopBackOff: it {how} "
                    f"{pod['failures']} times before it was ready; last log lines:\n{log}"
                )
        return ""


def _set_condition(
    conditions: dict[str, dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    touch: bool = False,
) -> None:
    """Set a condition as the controller does.

    lastTransitionTime moves when the status changes; lastUpdateTime also when the reason
    changes or on progress (`touch`), which is what the progress deadline is measured from.
    """
    stamp = now()
    old = conditions.get(kind)
    same = old is not None and old["status"] == status
    kept = old is not None and same and old["reason"] == reason and not touch
    conditions[kind] = {
        "type": kind,
        "status": status,
        "lastUpdateTime": old["lastUpdateTime"] if kept and old else stamp,
        "lastTransitionTime": old["lastTransitionTime"] if same and old else stamp,
        "reason": reason,
        "message": message,
    }


def _check(probe: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Run a readiness probe against the pod's local port (exec and grpc probes: alive is ready)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    for kind in ("httpGet", "tcpSocket"):
        if kind in probe:
            action = probe[kind]
            port = (pod.get("ports") or {}).get(str(action.get("port")), pod["port"])
            if kind == "tcpSocket":
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
                except OSError:
                    return False
                return True
            scheme = str(action.get("scheme") or "HTTP").lower()
            path = action.get("path") or "/"
            return _pods.http_ok(f"{scheme}://127.0.0.1:{port}{path}", timeout=timeout)
    return True


def _template_store(folder: Path, pod_hash: str, template: dict[str, Any]) -> None:
    path = folder / f"template-{pod_hash}.json"
    if not path.exists():
        write_json(path, template)


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _count(value: Any, replicas: int, round_up: bool) -> int:
    """An int-or-percent of replicas (maxSurge rounds up, maxUnavailable down)."""
    if isinstance(value, str) and value.endswith("%"):
        share = float(value[:-1]) / 100 * replicas
        return int(-(-share // 1)) if round_up else int(share)
    return int(value)


def _kill_leftovers(pid: int) -> None:
    """Kill what is left of a pod whose leader process is gone (vLLM's engine and workers).

    Only when no process has the leader's pid: Linux hands out a pid again only once no
    group uses it as its id, so a live process with that pid (not ours: its start differs)
    means our group is empty, and the group with that id is somebody else's.
    """
    if not Path(f"/proc/{pid}").exists():
        _pods.signal_group(pid, signal.SIGKILL)
