"""Service on one machine: a stored object whose endpoints are the ready pods it selects.

A Service's endpoints are the ready, non-terminating pods of the Deployments in its namespace
whose labels match its selector; `targetPort` (a number or a container port's name) becomes
the pod's local port. They are published in the services map `<home>/platform/services.json`
(see `_network`), which `serving.endpoints.resolve` reads to turn `http://<svc>.<ns>:8000`
into a ready pod's address, as cluster DNS and kube-proxy would. Steps of `llmflow run` get the
map's path in env `LLMFLOW_SERVICES`.
"""

from __future__ import annotations

import uuid
from typing import Any

from workflows.local.kinds import _network
from workflows.local.kinds._state import serving_lock
from workflows.local.platform import Object, StoredHandler, register
from workflows.local.store import now


class ServingStoredHandler(StoredHandler):
    """A stored serving object: kept under the serving lock; the network follows each change."""

    def apply(self, obj: Object, action: str) -> Object:
        """Store the object (keeping uid, creation time; bumping generation) and resync."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or self.platform.namespace
        with serving_lock(self.platform.root):
            current = super().get(namespace, meta.get("name", ""))
            stored = super().apply(obj, action)
            old_meta: dict[str, Any] = (current or {}).get("metadata") or {}
            stored["metadata"].update(
                uid=old_meta.get("uid") or str(uuid.uuid4()),
                creationTimestamp=old_meta.get("creationTimestamp") or now(),
                generation=int(old_meta.get("generation", 0))
                + (current is None or current.get("spec") != stored.get("spec")),
            )
            stored.pop("status", None)
            stored = super().apply(stored, "replace")
            _network.sync(self.platform.root)
        return self.get(namespace, stored["metadata"]["name"]) or stored

    def delete(self, namespace: str, name: str) -> None:
        """Remove the object and resync the network without it."""
        with serving_lock(self.platform.root):
            super().delete(namespace, name)
            _network.sync(self.platform.root)


@register("Service")
class ServiceHandler(ServingStoredHandler):
    """Services: endpoints are the ready pods matching the selector, in the services map."""

    kind = "Service"

    def get(self, namespace: str, name: str) -> Object | None:
        """The Service, with `status.loadBalancer` empty as for a ClusterIP Service."""
        obj = super().get(namespace, name)
        if obj is not None:
            obj["status"] = {"loadBalancer": {}}
        return obj
