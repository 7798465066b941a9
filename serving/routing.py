"""How requests reach a model: one Service per track, one HTTPRoute splitting traffic by weight.

The canary is rolled out by re-applying the HTTPRoute with new weights (Gateway API
`backendRefs[].weight`), so no pod or Service changes between stages, and every Gateway API
implementation does the split the same way.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import V1ObjectMeta, V1Service, V1ServicePort, V1ServiceSpec

from serving.labels import (
    TRACKS,
    check_track,
    common_labels,
    model_labels,
    object_name,
    route_name,
    selector,
    serving_of,
)
from workflows.spec import ReleaseSpec
from workflows.training.pod import serialise

#: The Gateway API group and version of HTTPRoute (standard channel).
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"

#: Largest weight Gateway API accepts for one backendRef.
MAX_WEIGHT = 1_000_000

#: Request timeout of the route. Gateways often default to 15 s, which cuts off a streamed
#: generation half-way; ten minutes covers a long answer at low throughput and still ends a
#: request to a hung backend. The backend timeout equals it (it may not exceed it).
REQUEST_TIMEOUT = "10m"


def build_service(spec: ReleaseSpec, track: str) -> dict[str, Any]:
    """The v1 ClusterIP Service in front of one track's pods.

    Its port is named "http" (the ServiceMonitor scrapes by that name) and targets the
    container's "http" port; its labels carry the model's name, so the ServiceMonitor selects
    the Services of both tracks.

    Raises:
        ValueError: the spec has no `serving` section, or the track is unknown.
    """
    serving = serving_of(spec)
    service = V1Service(
        api_version="v1",
        kind="Service",
        metadata=V1ObjectMeta(
            name=object_name(spec, track),
            namespace=spec.namespace,
            labels=common_labels(spec, track),
        ),
        spec=V1ServiceSpec(
            type="ClusterIP",
            selector=selector(spec, track),
            ports=[
                V1ServicePort(name="http", port=serving.port, target_port="http", protocol="TCP")
            ],
        ),
    )
    result: dict[str, Any] = serialise(service)
    return result


def build_httproute(spec: ReleaseSpec, weights: dict[str, int]) -> dict[str, Any]:
    """The model's HTTPRoute, sending each track its weight of the traffic.

    Args:
        spec: The release spec; `serving.gateway` names the parent Gateway and hostnames.
        weights: Weight by track ("stable", "canary"), e.g. `{"stable": 90, "canary": 10}`.
            A weight of 0 keeps the track's backendRef with no traffic (Gateway API allows
            it), so a stage can be undone by changing numbers only. Stable comes first.

    Raises:
        ValueError: the spec has no `serving` section, a track is unknown, there is no
            track, or a weight is outside 0..1000000.
    """
    serving = serving_of(spec)
    if not weights:
        raise ValueError("weights is empty: give at least one track, e.g. {'stable': 100}")
    for track, weight in weights.items():
        check_track(track)
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of track {track!r} is {weight}: use 0..{MAX_WEIGHT}")
    backend_refs = [
        {"name": object_name(spec, track), "port": serving.port, "weight": weights[track]}
        for track in TRACKS
        if track in weights
    ]
    gateway = serving.gateway
    parent: dict[str, Any] = {"name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    route_spec: dict[str, Any] = {"parentRefs": [parent]}
    if gateway.hostnames:
        route_spec["hostnames"] = list(gateway.hostnames)
    route_spec["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": backend_refs,
            "timeouts": {"request": REQUEST_TIMEOUT, "backendRequest": REQUEST_TIMEOUT},
        }
    ]
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(spec),
            "namespace": spec.namespace,
            "labels": model_labels(spec),
        },
        "spec": route_spec,
    }
