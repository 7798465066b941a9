"""What the local platform is serving, and stopping all of it: `llmflow local status|down`.

`status(home)` reconciles every Deployment first (dead pods restarted, rollouts advanced), then
reports each serving object, each process (pods, nginx, its mirror relay, Prometheus: pid,
port, alive, healthy; the relay's counters too), the gateway and Prometheus URLs and the
services map. `down(home)` stops every process and removes the serving state; it is
idempotent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from workflows.local.kinds import _pods
from workflows.local.kinds._endpoints import all_pods
from workflows.local.kinds._mirror import share_percent
from workflows.local.kinds._network import PROMETHEUS_KEY
from workflows.local.kinds._nginx import LocalGateway
from workflows.local.kinds._prometheus import LocalPrometheus
from workflows.local.kinds._state import (
    STORED_SERVING_KINDS,
    deployment_folders,
    namespaces,
    read_json,
    services_map_path,
    serving_lock,
    stored_objects,
)
from workflows.local.kinds.deployment import DeploymentHandler, stop_pods
from workflows.local.kinds.policies import NOT_ACTED_ON
from workflows.local.platform import LocalPlatform


def status(home: Path) -> dict[str, Any]:
    """Objects, processes and URLs of the platform under `home` (`.llmflow`)."""
    platform = LocalPlatform(home, "default")
    root = platform.root
    handler = platform.handler("Deployment")
    assert isinstance(handler, DeploymentHandler)
    if root.is_dir():
        handler.reconcile_all()
    objects: list[dict[str, Any]] = []
    model = "<served-model-name>"
    for namespace, name, folder in deployment_folders(root):
        obj = read_json(folder / "object.json", {})
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        for container in (template.get("spec") or {}).get("containers") or []:
            args = [str(a) for a in container.get("args") or []]
            if "--served-model-name" in args[:-1]:
                model = args[args.index("--served-model-name") + 1]
        objects.append(
            {
                "kind": "Deployment",
                "namespace": namespace,
                "name": name,
                "ready": f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
                "version": labels.get("version", ""),
                "note": _progress(st),
            }
        )
    for kind in STORED_SERVING_KINDS:
        for obj in stored_objects(root, kind):
            meta = obj["metadata"]
            objects.append(
                {
                    "kind": kind,
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "ready": "",
                    "version": (meta.get("labels") or {}).get("version", ""),
                    "note": NOT_ACTED_ON.get(kind, _route_note(obj)),
                }
            )
    processes = []
    for namespace, deployment, pod in all_pods(root):
        port, pid = pod.get("port"), pod.get("pid")
        alive = _pods.alive(pid, pod.get("ticks"))
        processes.append(
            {
                "kind": "pod",
                "name": f"{namespace}/{pod['name']}",
                "deployment": deployment,
                "pid": pid,
                "port": port,
                "alive": alive,
                "healthy": alive and _pods.http_ok(f"http://127.0.0.1:{port}/health"),
                "ready": bool(pod.get("ready")),
                "terminating": bool(pod.get("terminating")),
                "restarts": max(int(pod.get("restarts", 0)), 0),
                "version": (pod.get("labels") or {}).get("version", ""),
            }
        )
    gateway, prometheus = LocalGateway(root), LocalPrometheus(root)
    gateway_pid = gateway.pid()
    gateway_state = gateway.state()
    if gateway_state.get("pid"):
        processes.append(
            {
                "kind": "nginx",
                "name": "gateway",
                "pid": gateway_state["pid"],
                "port": ",".join(str(p) for p in (gateway_state.get("ports") or {}).values()),
                "alive": gateway_pid is not None,
                "healthy": gateway_pid is not None,
            }
        )
    relay_state = gateway.relay.state()
    if relay_state.get("pid"):
        relay_stats = gateway.relay.stats()
        processes.append(
            {
                "kind": "relay",
                "name": "gateway mirror relay",
                "pid": relay_state["pid"],
                "port": relay_state.get("port"),
                "alive": gateway.relay.pid() is not None,
                "healthy": relay_stats is not None,
                "stats": relay_stats or {},
            }
        )
    prom_state = prometheus.state()
    prom_url = prometheus.url()
    if prom_state.get("pid"):
        processes.append(
            {
                "kind": "prometheus",
                "name": PROMETHEUS_KEY,
                "pid": prom_state["pid"],
                "port": prom_state.get("port"),
                "alive": prom_url is not None,
                "healthy": prom_url is not None and _pods.http_ok(f"{prom_url}/-/healthy"),
            }
        )
    gateways = gateway.urls()
    curl = ""
    if gateways:
        url = next(iter(gateways.values()))
        curl = (
            f"curl -s {url}/v1/completions -H 'Content-Type: application/json' "
            f"-d '{json.dumps({'model': model, 'prompt': 'Hello', 'max_tokens': 8})}'"
        )
    return {
        "objects": objects,
        "processes": processes,
        "gateways": gateways,
        "prometheus": prom_url,
        "services_map": str(services_map_path(root)),
        "curl": curl,
    }


def _progress(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing":
            return f"{condition.get('reason', '')}"
    return ""


def _route_note(obj: dict[str, Any]) -> str:
    if obj.get("kind") != "HTTPRoute":
        return ""
    shares = []
    for rule in (obj.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            shares.append(f"{ref.get('name')}={ref.get('weight', 1)}")
        for flt in rule.get("filters") or []:
            mirror = flt.get("requestMirror") or {}
            if flt.get("type") == "RequestMirror" and isinstance(mirror, dict):
                name = (mirror.get("backendRef") or {}).get("name")
                shares.append(f"mirror {name} {share_percent(mirror):.4g}%")
    return "weights " + " ".join(shares)


def down(home: Path) -> list[str]:
    """Stop every serving process under `home` and remove the serving state; what was stopped."""
    root = home / "platform"
    if not root.is_dir():
        return []
    stopped = []
    with serving_lock(root):
        pods = []
        for namespace in namespaces(root):
            folder = root / namespace / "Deployment"
            for child in sorted(folder.iterdir()) if folder.is_dir() else []:
                for pod in read_json(child / "pods.json", []) or []:
                    if pod.get("pid") and _pods.alive(pod["pid"], pod.get("ticks")):
                        stopped.append(f"pod {namespace}/{pod['name']} (pid {pod['pid']})")
                    pods.append(pod)
        stop_pods(pods)
        gateway, prometheus = LocalGateway(root), LocalPrometheus(root)
        if gateway.pid() is not None:
            stopped.append(f"nginx gateway (pid {gateway.pid()})")
        if gateway.relay.pid() is not None:
            stopped.append(f"mirror relay (pid {gateway.relay.pid()})")
        gateway.stop()
        if prometheus.pid() is not None:
            stopped.append(f"prometheus (pid {prometheus.pid()})")
        prometheus.stop()
        for namespace in namespaces(root):
            for kind in ("Deployment", *STORED_SERVING_KINDS):
                shutil.rmtree(root / namespace / kind, ignore_errors=True)
        shutil.rmtree(gateway.folder, ignore_errors=True)
        shutil.rmtree(prometheus.folder, ignore_errors=True)
        services_map_path(root).unlink(missing_ok=True)
    return stopped
