"""Follow endpoint changes: the services map, the gateway's upstreams, Prometheus' targets.

`sync(root)` is called (under the serving lock) whenever pods, Services, HTTPRoutes or
ServiceMonitors change. It recomputes every Service's endpoints from the state on disk, then
writes the services map and regenerates nginx's and Prometheus' configs; each is written (and
its process reloaded) only when it changed.

The services map (`<home>/platform/services.json`), read by `serving.endpoints.resolve`:

    {"<svc>.<ns>": {"port": 8000, "endpoints": ["127.0.0.1:41234"],
                    "ports": {"8000": [...], "http": [...]}},
     "<gateway>.<ns>": {"port": 80, "endpoints": ["127.0.0.1:40001"], "kind": "Gateway"},
     "prometheus-operated.monitoring": {"port": 9090, "endpoints": [...], "kind": "Prometheus"}}

`port`/`endpoints` are the Service's first port; `ports` has every port by number and name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.local.kinds._endpoints import ServiceEndpoints, service_endpoints
from workflows.local.kinds._nginx import LocalGateway
from workflows.local.kinds._prometheus import LocalPrometheus
from workflows.local.kinds._state import services_map_path, stored_objects, write_json

#: The services map key of the local Prometheus, as prometheus-operator's Service is named.
PROMETHEUS_KEY = "prometheus-operated.monitoring"


def sync(root: Path) -> dict[tuple[str, str], ServiceEndpoints]:
    """Bring the services map, nginx and Prometheus in line with the state on disk."""
    services = service_endpoints(root)
    gateway = LocalGateway(root)
    gateway.apply(stored_objects(root, "HTTPRoute"), services)
    prometheus = LocalPrometheus(root)
    prometheus.apply(stored_objects(root, "ServiceMonitor"), services)
    write_services_map(root, services, gateway, prometheus)
    return services


def write_services_map(
    root: Path,
    services: dict[tuple[str, str], ServiceEndpoints],
    gateway: LocalGateway,
    prometheus: LocalPrometheus,
) -> None:
    """Write the services map atomically (only when it changed)."""
    entries: dict[str, Any] = {}
    for (namespace, name), svc in sorted(services.items()):
        ports: dict[str, list[str]] = {}
        for port in svc.ports:
            addresses = [e.address for e in port.endpoints]
            ports[str(port.port)] = addresses
            if port.name:
                ports[port.name] = addresses
        first = svc.ports[0] if svc.ports else None
        entries[f"{name}.{namespace}"] = {
            "port": first.port if first else 0,
            "endpoints": [e.address for e in first.endpoints] if first else [],
            "ports": ports,
        }
    for key, url in gateway.urls().items():
        namespace, name = key.split("/", 1)
        address = url.removeprefix("http://")
        entries[f"{name}.{namespace}"] = {"port": 80, "endpoints": [address], "kind": "Gateway"}
    prometheus_url = prometheus.url()
    if prometheus_url:
        address = prometheus_url.removeprefix("http://")
        entries[PROMETHEUS_KEY] = {"port": 9090, "endpoints": [address], "kind": "Prometheus"}
    if entries:
        write_json(services_map_path(root), entries)
    else:  # nothing served (after `llmflow local down`): no map, and no folder made for one
        services_map_path(root).unlink(missing_ok=True)
