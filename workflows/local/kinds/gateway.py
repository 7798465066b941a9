"""HTTPRoute on one machine: a local nginx gateway whose weighted upstreams follow the routes.

Every HTTPRoute (gateway.networking.k8s.io/v1) is served by one local nginx (`_nginx`), on one
free port per Gateway its parentRefs name (the same port across runs while nginx lives). Each
rule splits requests over its backendRef Services' ready endpoints by weight; a backend with
weight 0 or no ready endpoint gets none, and a rule with no backend left answers 503. Routes
or endpoints that change regenerate the config and reload nginx gracefully, so no request is
dropped. The gateway's URL is in the services map as `<gateway>.<namespace>` and shown by
`llmflow local status`.

A rule's `RequestMirror` filter (one per rule) copies its `percent` or `fraction` of the
requests to one ready endpoint of the named Service; the copies' answers are discarded, and
they never hold up a client's answer or connection (they pass through a relay, see `_mirror`).

Status as a Gateway API controller writes it: `status.parents[]` with conditions Accepted and
ResolvedRefs (False, reason BackendNotFound, when a backendRef or the mirror's backendRef
names no Service; such a mirror copies nothing). Not supported locally (refused when
applied): filters other than one RequestMirror per rule, backendRefs[].filters,
header/query/method matches, backendRefs to kinds other than Service.
"""

from __future__ import annotations

from typing import Any

from workflows.exceptions import RunError
from workflows.local.kinds._endpoints import service_endpoints
from workflows.local.kinds._mirror import check_filters, resolve_mirror
from workflows.local.kinds._nginx import LocalGateway, resolve_backends
from workflows.local.kinds.service import ServingStoredHandler
from workflows.local.platform import Object, register
from workflows.local.store import now

#: The controllerName the local gateway writes into route status.
CONTROLLER = "llmflow.local/nginx-gateway"


@register("HTTPRoute")
class HTTPRouteHandler(ServingStoredHandler):
    """HTTPRoutes served by the local nginx gateway."""

    kind = "HTTPRoute"

    def normalise(self, obj: Object) -> Object:
        """Refuse what the local gateway cannot do, naming the field."""
        name = (obj.get("metadata") or {}).get("name")
        spec = obj.get("spec") or {}
        if not spec.get("parentRefs"):
            raise RunError(f"HTTPRoute {name}: spec.parentRefs names no Gateway")
        for i, rule in enumerate(spec.get("rules") or []):
            where = f"HTTPRoute {name}: spec.rules[{i}]"
            check_filters(where, rule)
            for j, match in enumerate(rule.get("matches") or []):
                extra = sorted(set(match) - {"path"})
                if extra:
                    raise RunError(
                        f"{where}.matches[{j}].{extra[0]} is not supported by the local gateway "
                        "(path matches only)"
                    )
            for j, ref in enumerate(rule.get("backendRefs") or []):
                if ref.get("filters"):
                    raise RunError(f"{where}.backendRefs[{j}].filters are not supported locally")
        return obj

    def get(self, namespace: str, name: str) -> Object | None:
        """The route with `status.parents` as the gateway controller writes it."""
        obj = super().get(namespace, name)
        if obj is None:
            return None
        services = service_endpoints(self.platform.root)
        urls = LocalGateway(self.platform.root).urls()
        missing: list[str] = []
        for rule in (obj.get("spec") or {}).get("rules") or []:
            missing += resolve_backends(obj, rule, services)[1]
            missing += resolve_mirror(obj, rule, services)[1]
        generation = obj["metadata"].get("generation", 1)
        stamp = obj["metadata"].get("creationTimestamp") or now()
        parents = []
        for ref in obj["spec"]["parentRefs"]:
            key = f"{ref.get('namespace') or namespace}/{ref.get('name')}"
            url = urls.get(key)
            accepted = _condition(
                "Accepted",
                url is not None,
                "Accepted" if url else "Pending",
                f"Accepted by the local gateway at {url}" if url else "the local gateway is down",
                generation,
                stamp,
            )
            resolved = _condition(
                "ResolvedRefs",
                not missing,
                "ResolvedRefs" if not missing else "BackendNotFound",
                "All references resolved"
                if not missing
                else f"backendRef Service(s) not found: {', '.join(missing)}",
                generation,
                stamp,
            )
            parents.append(
                {"parentRef": ref, "controllerName": CONTROLLER, "conditions": [accepted, resolved]}
            )
        obj["status"] = {"parents": parents}
        return obj


def _condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, stamp: str
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": stamp,
    }
