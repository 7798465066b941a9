"""Deployment on one machine: each replica a detached local process that outlives the run.

`DeploymentHandler` is the kind's API (`apply`, `get`, `delete`, `reconcile_all`, `close`):
it stores the object, refuses a pod template this machine cannot run (more than one container,
an image without a local runtime), and runs the Deployment's controller (`_controller`: the
kubelet, the rolling update, the status) on every `get` and `apply`, and from a background
thread while a run lives, so pods are restarted and rollouts advance without a caller polling.

State: `<home>/platform/<ns>/Deployment/<name>/` holds object.json (the object with its last
status), pods.json (pid, start ticks, port, core, ready, restarts, ...) and `<pod>.log`. A
run that ends leaves the pods running (`close()` only finishes pods already draining);
`delete` or `llmflow local down` stops them.
"""

from __future__ import annotations

import copy
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds import _network, _pods, _runtime
from workflows.local.kinds._controller import DRAIN_S, GRACE_S, Controller, only_container
from workflows.local.kinds._state import (
    deployment_folders,
    matches,
    read_json,
    serving_lock,
    write_json,
)
from workflows.local.platform import KindHandler, LocalPlatform, Object, _merge, register
from workflows.local.store import now

#: Seconds between reconciles by the background thread.
RESYNC_S = 1.0


@register("Deployment")
class DeploymentHandler(KindHandler):
    """Runs Deployments as detached local processes that stay up after the run."""

    def __init__(self, platform: LocalPlatform) -> None:
        super().__init__(platform)
        self.lock = serving_lock(platform.root)
        self.probes: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def folder(self, namespace: str, name: str) -> Path:
        """Where one Deployment's state lives (object, pods, logs, templates)."""
        return self.platform.root / namespace / "Deployment" / name

    def apply(self, obj: Object, action: str) -> Object:
        """Create, apply, replace or patch a Deployment; a new pod template rolls out."""
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace") or self.platform.namespace
        if not name:
            raise RunError("Deployment without metadata.name; generateName is not supported")
        with self.lock:
            folder = self.folder(namespace, name)
            current = read_json(folder / "object.json")
            if action == "create" and current is not None:
                raise RunError(f'Deployment "{name}" already exists in namespace {namespace}')
            if action == "patch":
                if current is None:
                    raise RunError(f'Deployment "{name}" not found in namespace {namespace}')
                obj = _strategic_merge(_without_status(current), obj)
            stored = copy.deepcopy(obj)
            stored.pop("status", None)
            stored.setdefault("metadata", {})["namespace"] = namespace
            _check_pod_template(stored, self.platform)
            if current is None:
                stored["metadata"].update(
                    uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1
                )
            else:
                for key in ("uid", "creationTimestamp", "generation"):
                    stored["metadata"][key] = current["metadata"].get(key)
                if stored.get("spec") != current.get("spec"):
                    stored["metadata"]["generation"] = int(current["metadata"]["generation"]) + 1
                stored["status"] = current.get("status") or {}
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "object.json", stored)
            result = Controller(self, namespace, name).reconcile()
        self._watch()
        return result

    def get(self, namespace: str, name: str) -> Object | None:
        """The Deployment after reconciling it (dead pods restarted, rollout advanced)."""
        with self.lock:
            if not (self.folder(namespace, name) / "object.json").is_file():
                return None
            result = Controller(self, namespace, name).reconcile()
        self._watch()
        return result

    def delete(self, namespace: str, name: str) -> None:
        """Take the pods out of the Services, stop them after a drain, remove the state."""
        with self.lock:
            folder = self.folder(namespace, name)
            if not folder.is_dir():
                return
            trash = folder.with_name(f".deleting-{name}-{uuid.uuid4().hex[:6]}")
            folder.rename(trash)
            _network.sync(self.platform.root)
        stop_pods(read_json(trash / "pods.json", []) or [])
        shutil.rmtree(trash, ignore_errors=True)

    def reconcile_all(self) -> None:
        """Reconcile every Deployment of the platform (what the controllers do continuously)."""
        with self.lock:
            for namespace, name, _ in deployment_folders(self.platform.root):
                Controller(self, namespace, name).reconcile()
            _network.sync(self.platform.root)

    def _watch(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="llmflow-deployments", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(RESYNC_S):
            try:
                self.reconcile_all()
            except Exception:  # noqa: BLE001 - the next get() reports what is wrong
                continue

    def close(self) -> None:
        """Stop the background thread; finish draining pods; leave serving pods running."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        deadline = time.monotonic() + DRAIN_S + GRACE_S + 5
        while time.monotonic() < deadline:
            with self.lock:
                folders = deployment_folders(self.platform.root)
                pending = [
                    (ns, name)
                    for ns, name, folder in folders
                    if any(p.get("terminating") for p in read_json(folder / "pods.json", []) or [])
                ]
                for ns, name in pending:
                    Controller(self, ns, name).reconcile()
            if not pending:
                return
            time.sleep(0.2)


def stop_pods(pods: list[dict[str, Any]]) -> None:
    """Stop pods' process groups (in parallel: each gets its grace period)."""
    threads = [
        threading.Thread(target=_pods.stop, args=(p["pid"], p.get("ticks"), GRACE_S))
        for p in pods
        if p.get("pid")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _without_status(obj: Object) -> Object:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    return out


def _strategic_merge(base: Any, patch: Any) -> Any:
    """A merge patch that merges lists of named items by name, as a strategic merge does."""
    if isinstance(base, list) and isinstance(patch, list):
        if all(isinstance(i, dict) and "name" in i for i in [*base, *patch]):
            merged = {i["name"]: copy.deepcopy(i) for i in base}
            for item in patch:
                merged[item["name"]] = _strategic_merge(merged.get(item["name"]), item)
            return list(merged.values())
        return copy.deepcopy(patch)
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _strategic_merge(out.get(key), value)
        return out
    return _merge(base, patch)


def _check_pod_template(obj: Object, platform: LocalPlatform) -> None:
    """Refuse, before anything is stored, a pod this machine cannot run."""
    where = f"Deployment {obj['metadata']['name']}"
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    container = only_container(template, where)
    _runtime.check_image(str(container.get("image") or ""), where)
    _runtime.vllm_python(platform.env, platform.workdir)
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = spec.get("selector") or {}
    if not selector or not matches(selector, labels):
        raise RunError(f"{where}: spec.selector does not match spec.template.metadata.labels")
