"""Service URLs on one machine: `http://<svc>.<ns>:8000` to a ready pod's local address.

On a cluster, `http://tiny-llama-canary.llmflow:8000` reaches a ready pod through DNS and
kube-proxy. Locally the pods are processes on free ports, and the local platform publishes a
services map (`<root>/platform/services.json`, see `workflows/local/kinds/_network.py`) whose
path `llmflow run` gives every step in env `LLMFLOW_SERVICES`. `resolve` rewrites a URL whose
host is a Service in that map (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) to
one of its ready endpoints; without the variable, or for any other host, the URL is returned
unchanged, so the same step code runs in both places. The map is re-read at each call:
endpoints move during a rollout.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from workflows.exceptions import LLMFlowError

#: The environment variable naming the services map.
SERVICES_ENV = "LLMFLOW_SERVICES"


class NoEndpoints(LLMFlowError):
    """A known Service has no ready endpoint (its pods are starting, crashing or gone)."""


def _services(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise LLMFlowError(f"services map {path} (env {SERVICES_ENV}) is not JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _key(host: str, services: dict[str, Any]) -> str | None:
    """The map key (`svc.ns`) a host names, or None."""
    host = host.lower().rstrip(".")
    for suffix in (".svc.cluster.local", ".svc"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    if host in services:
        return host
    if "." not in host:  # a bare service name: unique across namespaces
        matching = [k for k in services if k.split(".", 1)[0] == host]
        if len(matching) == 1:
            return matching[0]
    return None


def resolve(url: str) -> str:
    """The URL with a local Service's host and port replaced by one of its ready endpoints.

    Raises:
        NoEndpoints: the host is a Service of the map with no ready endpoint.
    """
    path = os.environ.get(SERVICES_ENV)
    if not path:
        return url
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    services = _services(path)
    key = _key(parts.hostname, services)
    if key is None:
        return url
    entry = services[key]
    endpoints = entry.get("endpoints") or []
    ports = entry.get("ports") or {}
    if parts.port is not None and ports:
        if str(parts.port) not in ports:
            known = ", ".join(p for p in ports if p.isdigit()) or "none"
            raise NoEndpoints(
                f"Service {key} has no port {parts.port} (its ports: {known}); "
                "use one of them in the URL"
            )
        endpoints = ports[str(parts.port)]
    if not endpoints:
        raise NoEndpoints(
            f"Service {key} has no ready endpoint (services map {path}); its pods are not "
            "ready: see `llmflow local status`"
        )
    netloc = random.choice(endpoints)
    if parts.username or parts.password:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
