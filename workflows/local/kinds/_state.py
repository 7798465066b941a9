"""The serving kinds' state on disk: one lock, atomic JSON files, listings of stored objects.

Everything a Deployment, Service, HTTPRoute or ServiceMonitor needs to keep serving lives
under `<home>/platform/`, so a later `llmflow run` (another process) finds it:

    platform/.serving.lock                     held around every change of serving state
    platform/services.json                     the services map (`serving.endpoints` reads it)
    platform/<ns>/Deployment/<name>/object.json  the Deployment as stored (spec, generation)
    platform/<ns>/Deployment/<name>/pods.json    its pods: pid, port, ready, restarts, ...
    platform/<ns>/Deployment/<name>/<pod>.log    each pod's output
    platform/<ns>/<Kind>/<name>.json           Service, HTTPRoute, ServiceMonitor, PDB, HPA
    platform/gateway/                          the local nginx and mirror relay (conf, pid, logs)
    platform/prometheus/                       the local Prometheus (config, data, pid, log)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

#: Kinds stored as `<ns>/<Kind>/<name>.json` (Deployments have a folder each).
STORED_SERVING_KINDS = (
    "Service",
    "HTTPRoute",
    "ServiceMonitor",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
)

#: Folders of `platform/` that are not namespaces.
NOT_NAMESPACES = {"gateway", "prometheus"}

_LOCKS: dict[Path, FileLock] = {}


def serving_lock(root: Path) -> FileLock:
    """The lock around serving state under a platform folder (reentrant in one thread)."""
    path = (root / ".serving.lock").resolve()
    if path not in _LOCKS:
        _LOCKS[path] = FileLock(path)
    return _LOCKS[path]


def services_map_path(root: Path) -> Path:
    """Where the services map of a platform folder is (`<home>/platform/services.json`)."""
    return root / "services.json"


def write_json(path: Path, data: Any) -> bool:
    """Write JSON atomically (readers see the old or the new file); False if unchanged."""
    text = json.dumps(data, indent=1, sort_keys=True)
    return write_text(path, text)


def write_text(path: Path, text: str) -> bool:
    """Write a text file atomically; False (and nothing written) if it already holds text."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content, or `default` when it does not exist or is torn."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def namespaces(root: Path) -> list[str]:
    """Namespaces that have objects under a platform folder."""
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in NOT_NAMESPACES and not p.name.startswith(".")
    )


def stored_objects(root: Path, kind: str) -> list[dict[str, Any]]:
    """Every stored object of a kind, in every namespace, oldest first."""
    found = []
    for namespace in namespaces(root):
        folder = root / namespace / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            obj = read_json(path)
            if isinstance(obj, dict):
                obj.setdefault("metadata", {}).setdefault("namespace", namespace)
                found.append(obj)
    found.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""), _key(o)))
    return found


def deployment_folders(root: Path) -> list[tuple[str, str, Path]]:
    """(namespace, name, folder) of every stored Deployment."""
    out = []
    for namespace in namespaces(root):
        folder = root / namespace / "Deployment"
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if not child.name.startswith(".") and (child / "object.json").is_file():
                    out.append((namespace, child.name, child))
    return out


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether labels match a label selector (`matchLabels` and `matchExpressions`).

    A plain mapping (a Service's selector) is treated as `matchLabels`. An empty selector
    matches everything, as the API server reads it for ServiceMonitors.
    """
    selector = selector or {}
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
