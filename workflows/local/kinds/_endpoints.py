"""Endpoints as the endpoints controller computes them: a Service's ready, matching pods.

A Service's endpoints are the pods of the Deployments in its namespace whose labels match its
selector, that are ready and not terminating; its `targetPort` (a number or a container port's
name) becomes the pod's local port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows.local.kinds._state import deployment_folders, matches, read_json, stored_objects


@dataclass
class Endpoint:
    """One ready pod behind a Service port."""

    address: str
    pod: str
    namespace: str
    labels: dict[str, str]
    container: str


@dataclass
class ServicePort:
    """A Service port and the endpoints behind it."""

    name: str
    port: int
    target: str
    endpoints: list[Endpoint] = field(default_factory=list)


@dataclass
class ServiceEndpoints:
    """A Service with its ports' endpoints."""

    namespace: str
    name: str
    labels: dict[str, str]
    ports: list[ServicePort]

    def port(self, ref: int | str | None) -> ServicePort | None:
        """The port a backendRef or ServiceMonitor endpoint names (number or name; None: first)."""
        if ref is None or ref == "":
            return self.ports[0] if self.ports else None
        for port in self.ports:
            if str(ref) in (port.name, str(port.port)):
                return port
        return None


def all_pods(root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, deployment, pod record) of every pod of every Deployment."""
    out = []
    for namespace, name, folder in deployment_folders(root):
        for pod in read_json(folder / "pods.json", []) or []:
            out.append((namespace, name, pod))
    return out


def service_endpoints(root: Path) -> dict[tuple[str, str], ServiceEndpoints]:
    """Every Service of a platform folder with its endpoints, by (namespace, name)."""
    pods = all_pods(root)
    out = {}
    for svc in stored_objects(root, "Service"):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        namespace = meta["namespace"]
        selector = spec.get("selector") or {}
        ports = []
        for item in spec.get("ports") or []:
            number = int(item.get("port", 0))
            target = str(item.get("targetPort") or number)
            ports.append(ServicePort(str(item.get("name") or ""), number, target))
        if selector:  # a Service without a selector has no endpoints of ours
            for pod_ns, _, pod in pods:
                if pod_ns != namespace or not pod.get("ready") or pod.get("terminating"):
                    continue
                if not matches(selector, pod.get("labels") or {}):
                    continue
                for port in ports:
                    local = (pod.get("ports") or {}).get(port.target)
                    if local:
                        port.endpoints.append(
                            Endpoint(
                                f"127.0.0.1:{local}",
                                pod["name"],
                                namespace,
                                dict(pod.get("labels") or {}),
                                str(pod.get("container") or ""),
                            )
                        )
        for port in ports:
            port.endpoints.sort(key=lambda e: e.pod)
        out[(namespace, meta["name"])] = ServiceEndpoints(
            namespace, meta["name"], dict(meta.get("labels") or {}), ports
        )
    return out
