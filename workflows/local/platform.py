"""LocalPlatform: what resource templates act on when a Workflow runs on one machine.

A registry of kinds, each with a handler that does locally what the kind's controller does on
a cluster and writes a status shaped like that controller's, so the template's
`successCondition` / `failureCondition` hold the same way. This module provides the
interface and the kinds with no controller behind them (ConfigMap, Secret); kinds that run
processes (PyTorchJob, Deployment, ...) register themselves the same way. A kind nobody
registered is a clear "not supported locally" error.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflows.exceptions import RunError

Object = dict[str, Any]

#: Handlers by kind, filled by `register`.
KINDS: dict[str, type[KindHandler]] = {}


def register(kind: str) -> Callable[[type[KindHandler]], type[KindHandler]]:
    """Class decorator: make a handler serve a kind."""

    def wrap(cls: type[KindHandler]) -> type[KindHandler]:
        KINDS[kind] = cls
        return cls

    return wrap


class KindHandler(ABC):
    """Does locally what one kind's controller does on a cluster."""

    def __init__(self, platform: LocalPlatform) -> None:
        self.platform = platform

    @abstractmethod
    def apply(self, obj: Object, action: str) -> Object:
        """Create, apply, replace or patch an object; returns it as stored."""

    @abstractmethod
    def get(self, namespace: str, name: str) -> Object | None:
        """The object with its current status, or None."""

    @abstractmethod
    def delete(self, namespace: str, name: str) -> None:
        """Delete the object and stop whatever runs for it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop everything this handler started (end of the run)."""


class StoredHandler(KindHandler):
    """Objects that are only data: kept as JSON files under the platform's folder."""

    kind = ""

    def _path(self, namespace: str, name: str) -> Path:
        return self.platform.root / namespace / self.kind / f"{name}.json"

    def normalise(self, obj: Object) -> Object:
        """Turn a submitted object into the stored form (as the API server would)."""
        return obj

    def apply(self, obj: Object, action: str) -> Object:
        """Store the object (create fails if it exists; patch merges into it)."""
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace") or self.platform.namespace
        if not name:
            raise RunError(f"{self.kind} without metadata.name; generateName is not supported")
        current = self.get(namespace, name)
        if action == "create" and current is not None:
            raise RunError(f'{self.kind} "{name}" already exists in namespace {namespace}')
        if action == "patch":
            if current is None:
                raise RunError(f'{self.kind} "{name}" not found in namespace {namespace}')
            obj = _merge(current, obj)
        stored = self.normalise(copy.deepcopy(obj))
        stored.setdefault("metadata", {})["namespace"] = namespace
        path = self._path(namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")  # mode 0600
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(stored))
        os.replace(tmp, path)
        return stored

    def get(self, namespace: str, name: str) -> Object | None:
        """The stored object, or None."""
        try:
            return dict(json.loads(self._path(namespace, name).read_text()))
        except FileNotFoundError:
            return None

    def delete(self, namespace: str, name: str) -> None:
        """Remove the stored object."""
        self._path(namespace, name).unlink(missing_ok=True)


@register("ConfigMap")
class ConfigMapHandler(StoredHandler):
    """ConfigMaps: data for `configMapKeyRef`."""

    kind = "ConfigMap"


@register("Secret")
class SecretHandler(StoredHandler):
    """Secrets: `stringData` folded into base64 `data`, as the API server stores them."""

    kind = "Secret"

    def normalise(self, obj: Object) -> Object:
        """Fold stringData into base64 data."""
        data = dict(obj.get("data") or {})
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
        return obj


def _merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


class LocalPlatform:
    """The kinds a local run can act on, with their objects under `root`.

    Args:
        home: The llmflow folder (`.llmflow`); objects live in `home/platform`, volumes in
            `home/volumes`.
        namespace: Namespace for objects that name none (the Workflow's).
        env: Environment of processes the platform starts; Secret keys not found locally are
            looked up here too (the user's environment).
        workdir: Where processes start.
    """

    def __init__(
        self,
        home: Path,
        namespace: str,
        env: dict[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.home = home
        self.root = home / "platform"
        self.namespace = namespace
        self.env = dict(os.environ if env is None else env)
        self.workdir = workdir or Path.cwd()
        self._handlers: dict[str, KindHandler] = {}

    def handler(self, kind: str) -> KindHandler:
        """The handler of a kind.

        Raises:
            RunError: the kind is not supported locally.
        """
        if kind not in self._handlers:
            import workflows.local.kinds  # noqa: F401 - registers the kinds that run processes

            if kind not in KINDS:
                known = ", ".join(sorted(KINDS))
                raise RunError(f"kind {kind!r} is not supported locally; supported: {known}")
            self._handlers[kind] = KINDS[kind](self)
        return self._handlers[kind]

    def act(self, action: str, obj: Object) -> Object | None:
        """Perform a resource template's action; returns the object (None after delete)."""
        kind = obj.get("kind", "")
        handler = self.handler(kind)
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or self.namespace
        if action == "delete":
            handler.delete(namespace, meta.get("name", ""))
            return None
        if action == "get":
            found = handler.get(namespace, meta.get("name", ""))
            if found is None:
                raise RunError(f'{kind} "{meta.get("name")}" not found in namespace {namespace}')
            return found
        if action not in {"create", "apply", "replace", "patch"}:
            raise RunError(
                f"resource action {action!r} is not one of create, apply, replace, "
                "patch, delete, get"
            )
        return handler.apply(obj, action)

    def get(self, kind: str, namespace: str, name: str) -> Object | None:
        """An object with its current status."""
        return self.handler(kind).get(namespace, name)

    def key_ref(self, kind: str, namespace: str, name: str, key: str) -> str | None:
        """A Secret or ConfigMap key; a Secret missing locally falls back to env var `key`."""
        obj = self.get(kind, namespace, name)
        if obj is not None:
            value = (obj.get("data") or {}).get(key)
            if value is None:
                return None
            return base64.b64decode(value).decode() if kind == "Secret" else str(value)
        if kind == "Secret":
            return self.env.get(key)
        return None

    def objects(self) -> list[Object]:
        """Every object stored under the platform's folder, of any kind.

        Data kinds are `<ns>/<Kind>/<name>.json`; kinds that run processes keep theirs as
        `<ns>/<Kind>/<name>/object.json`.
        """
        found: list[Object] = []
        if not self.root.is_dir():
            return found
        for kind_folder in sorted(self.root.glob("*/*")):
            if not kind_folder.is_dir() or kind_folder.name.startswith("."):
                continue
            for entry in sorted(kind_folder.iterdir()):
                path = entry / "object.json" if entry.is_dir() else entry
                if entry.name.startswith(".") or path.suffix != ".json" or not path.is_file():
                    continue
                try:
                    obj = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(obj, dict) and obj.get("kind") == kind_folder.name:
                    found.append(obj)
        return found

    def delete_owned_by(self, uid: str) -> list[str]:
        """Delete what `uid` owns, as Kubernetes' garbage collector does when an owner goes.

        Returns the deleted objects as `Kind/name`.
        """
        deleted = []
        for obj in self.objects():
            meta = obj.get("metadata") or {}
            if any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or []):
                self.act("delete", obj)
                deleted.append(f"{obj['kind']}/{meta.get('name')}")
        return deleted

    def close(self) -> None:
        """Stop whatever handlers started."""
        for handler in self._handlers.values():
            handler.close()
